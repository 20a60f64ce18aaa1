#!/usr/bin/env bash
# One leave-one-sequence-out run, resumable and chainable across sessions (docs/TRAINING.md):
#   scripts/loso_train.sh NAME FOLD [extra demasked-train consistency options...]
# trains runs/NAME (resuming if runs/NAME/last.pt exists), exports runs/NAME/segmenter.onnx once the
# schedule is complete (runs/NAME/DONE), then scores the held-out sequence into runs/NAME/folds.json.
# Rerunning the same command after an interruption continues where it stopped. Low priority, 1 thread.
set -euo pipefail
name=$1; fold=$2; shift 2
cd "$(dirname "$0")/.."
run=runs/$name
mkdir -p "$run"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=${PYTHONPATH:-$PWD}
py=${PYTHON:-.venv/bin/python}
resume=()
[[ -f $run/last.pt ]] && resume=(--resume)
if [[ ! -f $run/DONE ]]; then
  nice -n 19 "$py" -m demasked_ros.training.cli consistency --fold "$fold" --run-dir "$run" \
    --threads 1 --export "$run/segmenter.onnx" "${resume[@]}" "$@"
fi
if [[ -f $run/DONE && "$fold" != all ]]; then
  nice -n 19 "$py" -m demasked_ros.training.cli evaluate-folds --folds "$fold" \
    --segmenter "$run/segmenter.onnx" --demasker "${FOLD_DEMASKER:-default}" --threads 1 \
    --out "$run/folds.json" | tee -a "$run/log.txt"
fi
