#!/usr/bin/env bash
# The shipped segmenter's whole recipe on one leave-one-sequence-out fold (docs/TRAINING.md):
#   scripts/train_fold_recipe.sh FOLD        # FOLD = 0001TP | 0006R0 | 0016E5
#   EVERY=3 scripts/train_fold_recipe.sh 0016E5   # score every 3rd held-out frame (default: all)
#   THREADS=1 scripts/train_fold_recipe.sh FOLD   # torch threads (default 2; use 1 when another job
#                                                 # shares the 2 cores: oversubscribed threads stall)
# version 1's stages (segmenter from scratch 110 epochs, then 17 epochs on learned-demasker fills),
# then the consistency rounds (50 + 15 epochs: version 2; + 10 epochs: version 3), each on CamVid
# train+val minus FOLD, and scores the held-out drive for the stage-2 model (the version-1 recipe),
# the round-2 model (version 2) and the round-3 model (version 3, shipped) into
# runs/fold_FOLD/folds_{stage2,r2,r3}.json. Every stage resumes, so rerunning the same line after
# an interruption continues where it stopped. Differences from the
# shipped lineage: the last epoch of every stage is kept (version 1 picked stage 1's epoch 77 on val),
# and the packaged learned demasker fills the masks (it was trained on every train+val drive).
# About 1 h on 2 idle cores.
set -euo pipefail
fold=$1
cd "$(dirname "$0")/.."
export PYTHONPATH=${PYTHONPATH:-$PWD}
train=(${PYTHON:-.venv/bin/python} -m demasked_ros.training.cli)
run=runs/fold_$fold
threads=${THREADS:-2}
mkdir -p "$run/stage2"
"${train[@]}" segmenter --fold "$fold" --run-dir "$run/stage1" --resume --epochs 110 --val-every 1000 \
  --demask-aug-prob 0.2 --threads "$threads" --no-progress
[[ -f $run/stage2/last.pt ]] || cp "$run/stage1/last.pt" "$run/stage2/last.pt"
"${train[@]}" segmenter --fold "$fold" --run-dir "$run/stage2" --resume --epochs 127 --val-every 1000 \
  --demask-aug-prob 0.4 --demask-fill mixed --threads "$threads" --no-progress --export "$run/stage2/segmenter.onnx"
source scripts/fold_round.sh
round r1 "$run/stage2/last.pt" "${round1_args[@]}"
round r2 "$run/r1/last.pt" "${round2_args[@]}" --safety-weight 2
round r3 "$run/r2/last.pt" "${round3_args[@]}" --safety-weight 2
for model in stage2 r2 r3; do
  "${train[@]}" evaluate-folds --folds "$fold" --segmenter "$run/$model/segmenter.onnx" \
    --every "${EVERY:-1}" --out "$run/folds_$model.json"
done
