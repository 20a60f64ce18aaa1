#!/usr/bin/env bash
# The issue-10 ablation on one leave-one-sequence-out fold (docs/TRAINING.md, session 6). Run it
# after scripts/train_fold_recipe.sh FOLD (it starts from that run's checkpoints):
#   EVERY=3 THREADS=1 scripts/fold_ablation.sh 0016E5 [STEP...]
# STEP: demasker, noweight, alternate, evaluate (default: all four in that order; naming steps lets
# two 1-thread jobs share the two cores, e.g. `noweight` while the demasker trains).
# 1. a demasker trained without FOLD (the shipped demasker's recipe, 32 x 200 steps): runs/dem_FOLD;
# 2. class weighting ablated: rounds 2 and 3 again without --safety-weight (runs/fold_FOLD/r2nw, r3nw);
# 3. task-driven demasker: two `demasked-train alternate` rounds from round 3 and the fold's
#    demasker (segmenter 4 epochs on that demasker's fills, demasker 4 x 100 steps with the
#    frozen segmenter's clean-vs-demasked disagreement loss): runs/fold_FOLD/alt;
# 4. every row scored with the fold's own demasker, so nothing in the pipeline saw the held-out drive:
#    runs/fold_FOLD/folds_{stage2,r1,r2,r3,r2nw,r3nw}_fdem.json and alt/round{1,2}/folds.json.
# Every step resumes or is skipped when finished: rerunning the same line continues.
set -euo pipefail
fold=$1; shift
steps=${*:-demasker noweight alternate evaluate}
want() { [[ " $steps " == *" $1 "* ]]; }
cd "$(dirname "$0")/.."
export PYTHONPATH=${PYTHONPATH:-$PWD}
py=${PYTHON:-.venv/bin/python}
train=("$py" -m demasked_ros.training.cli)
run=runs/fold_$fold
dem=runs/dem_$fold
threads=${THREADS:-2}
every=${EVERY:-1}
needs() {  # ROUND: a round of scripts/train_fold_recipe.sh this step starts from
  [[ -f $run/$1/DONE ]] || { echo "fold_ablation: run scripts/train_fold_recipe.sh $fold first ($run/$1)" >&2; exit 2; }
}
epoch_of() { "$py" -c "import sys, torch; print(torch.load(sys.argv[1], map_location='cpu', weights_only=False)['epoch'])" "$1"; }
if want demasker && [[ ! -f $dem/last.pt || $(epoch_of "$dem/last.pt") -lt 32 ]]; then
  resume=(); [[ -f $dem/last.pt ]] && resume=(--resume)
  "${train[@]}" demasker --fold "$fold" --out-dir "$dem" --epochs 32 --steps-per-epoch 200 --batch-size 8 \
    --crop 256 256 --threads "$threads" --val-frames 8 "${resume[@]}"
fi
if want demasker && [[ ! -f $dem/demasker.onnx ]]; then
  "${train[@]}" demasker --fold "$fold" --out-dir "$dem" --export-only
fi
source scripts/fold_round.sh
if want noweight; then
needs r1
round r2nw "$run/r1/last.pt" "${round2_args[@]}"
round r3nw "$run/r2nw/last.pt" "${round3_args[@]}"
fi
want alternate && needs r3 && "${train[@]}" alternate --fold "$fold" --run-dir "$run/alt" --rounds 2 --seg-init "$run/r3/last.pt" \
  --dem-init "$dem/last.pt" --seg-epochs 4 --dem-epochs 4 --dem-steps 100 --task-weight 1 \
  --evaluate --eval-every "$every" \
  --seg-args "--branches 1 --one-mode --crop 240 320 --lr 1e-4 --strong-aug --safety-weight 2 --procedural-share 0.4 --procedural-frames 200 --threads $threads --eval-every 0" \
  --dem-args "--batch-size 8 --crop 256 256 --lr 2e-4 --threads $threads --val-frames 0"
want evaluate || exit 0
needs r3
for model in r3 r3nw stage2 r1 r2 r2nw; do
  "${train[@]}" evaluate-folds --folds "$fold" --segmenter "$run/$model/segmenter.onnx" \
    --demasker "$dem/demasker.onnx" --every "$every" --threads "$threads" --out "$run/folds_${model}_fdem.json"
done
