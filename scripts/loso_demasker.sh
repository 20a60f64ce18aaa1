#!/usr/bin/env bash
# Per-fold learned demasker (images of the fold's training sequences only), resumable across sessions:
#   scripts/loso_demasker.sh FOLD [extra demasked-train demasker options...]
# trains runs/dem_FOLD (continuing from runs/dem_FOLD/last.pt when present; the same 32 x 200-step
# schedule as the shipped demasker) and writes runs/dem_FOLD/demasker.onnx whenever it stops.
set -euo pipefail
fold=$1; shift
cd "$(dirname "$0")/.."
out=runs/dem_$fold
mkdir -p "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=${PYTHONPATH:-$PWD}
resume=()
[[ -f $out/last.pt ]] && resume=(--resume)
exec nice -n 19 "${PYTHON:-.venv/bin/python}" -m demasked_ros.training.cli demasker --fold "$fold" \
  --out-dir "$out" --epochs 32 --steps-per-epoch 200 --batch-size 8 --crop 256 256 --threads 1 \
  --val-frames 8 --time-limit-min 100 "${resume[@]}" "$@" >> "$out/log.txt" 2>&1
