#!/usr/bin/env bash
# The patch alarm on a drive its segmenter never saw (issue 9/10): the shipped calibration is fitted on
# clean frames the default segmenter trained on, and so may under-state the clean tail a user's drive
# shows. This redoes the shipped detection calibration with the fold-0016E5 model of the shipped
# recipe (scripts/train_fold_recipe.sh 0016E5 first; it never saw drive 0016E5, which holds the only
# camera-rate clip, val) and measures on that unseen drive:
#   1. the threshold fitted as shipped (train frames of 0001TP + 0006R0, every 2nd: the model's own
#      drives), its clean alarm rate on the unseen val clip (every 2nd), and the joint persistent
#      threshold on the whole clip;
#   2. the unseen drive's own clean scores (0016E5 train frames, every 2nd, 1 Hz);
#   3. PGD-30 detection patches on 11 val frames (every 10th), alarmed at the thresholds of 1.
# then prints the comparison (benchmarks/alarm_unseen_drive.py). About 12 min on 2 idle cores.
#   scripts/alarm_unseen_drive.sh [OUT]        # default runs/alarm_unseen
#   MODEL=other.onnx LIMIT=2 scripts/alarm_unseen_drive.sh /tmp/smoke   # another model; first N frames
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=${PYTHONPATH:-$PWD}
py=${PYTHON:-.venv/bin/python}
out=${1:-runs/alarm_unseen}
model=${MODEL:-runs/fold_0016E5/r3/segmenter.onnx}
data=../shared/data/camvid
[[ -f $model ]] || { echo "missing $model: run scripts/train_fold_recipe.sh 0016E5 first" >&2; exit 2; }
limit=()
[[ -n ${LIMIT:-} ]] && limit=(--limit "$LIMIT")
score=(--mode detection --segmenter "$model" --tolerance 2 --reach 1 --open-radius 1 --quiet "${limit[@]}")
"$py" -m demasked_ros.apps.calibrate_cli "$data/train" --sequences 0001TP 0006R0 --every 2 "${score[@]}" \
  --holdout "$data/val" --temporal "$data/val" --runs "$out/seen" --out "$out/calibration.json"
"$py" -m demasked_ros.apps.calibrate_cli "$data/train" --sequences 0016E5 --every 2 "${score[@]}" \
  --runs "$out/unseen" --out "$out/unseen_calibration.json"
"$py" -m demasked_ros.apps.attack_cli "$data/val" --out "$out/pgd30" --mode detection --attack pgd --steps 30 \
  --every 10 --segmenter "$model" --calibration "$out/calibration.json" --quiet "${limit[@]}" || [[ $? == 1 ]]
"$py" benchmarks/alarm_unseen_drive.py "$out"
