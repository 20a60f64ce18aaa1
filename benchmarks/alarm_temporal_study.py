"""Persistent (temporal) patch alarm on sequence attacks: clean alarm rate, detection rate, latency.

Reads ``demasked-attack --hold N --save-branches`` runs on a video-rate clip (CamVid val is every
2nd frame of 30 Hz, so 15 Hz): every frame attacked with a patch that keeps its position for N
consecutive frames. The clean stream is the clip's clean frames in order; each attacked window is
replayed as a patch appearing in that stream (the ``window - 1`` clean frames before it, then the
attacked frames). The persistent threshold is calibrated *jointly* with the shipped single-frame
one (at most ``--rate`` of clean frames alarmed by either rule) on one half of the clip and applied
to the other half, both ways (``--folds 2``), so no frame is scored with a threshold fitted on it.

    python benchmarks/alarm_temporal_study.py runs/eval/seq-pgd30-detection runs/eval/seq-pgd30-recovery \\
        --calibration demasked_ros/models/alarm_calibration.json --window 3 --spread 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from alarm_study import PATCH, load_pairs

from demasked_ros.core.alarm import AlarmGeometry, calibration_key, load_calibrations, patch_evidence
from demasked_ros.core.alarm_stats import calibrate_joint_threshold, roc_auc
from demasked_ros.core.alarm_temporal import TemporalParams, persistent_scores
from demasked_ros.core.masks import detection_masks, recovery_masks


def position_scores(folder: Path, calibration_file: Path) -> dict[str, Any]:
    """Per frame (in index order): clean and attacked position scores, placement, f changed."""
    pairs = sorted(load_pairs(folder), key=lambda pair: pair["name"])
    mode = "detection" if "detection" in folder.name else "recovery"
    height, width = pairs[0]["labels"].shape
    masks = (recovery_masks(height, width, PATCH[mode], "column") if mode == "recovery"
             else detection_masks(height, width, PATCH[mode], "column"))
    entry = load_calibrations(calibration_file).get(calibration_key(masks))
    if entry is None:
        raise SystemExit(f"{calibration_file} has no entry for {calibration_key(masks)}")
    geometry = AlarmGeometry(masks, entry.params)
    frames: dict[str, Any] = {"mode": mode, "geometry": geometry, "single": entry.threshold,
                              "index": [], "clean": [], "attacked": [], "changed": []}
    for pair in pairs:
        clean = patch_evidence(pair["clean_branches"], pair["clean_labels"], geometry)
        attacked = patch_evidence(pair["branches"], pair["labels"], geometry)
        frames["index"].append(int(pair["name"].split("_")[0]))
        frames["clean"].append(clean.positions)
        frames["attacked"].append(attacked.positions)
        frames["changed"].append(pair["f_changed_pct"] or 0.0)
    return frames


def evaluate(frames: dict[str, Any], params: TemporalParams, hold: int, rate: float,
             folds: int) -> dict[str, Any]:
    """Calibrate on all but one fold of the clip, score the held-out fold; pooled over folds."""
    grid = frames["geometry"].grid_shape
    index = np.asarray(frames["index"])
    if not np.array_equal(index, np.arange(index.size)):
        raise SystemExit("the run must cover every frame of the clip (--every 1)")
    single = frames["single"]
    clean_single = np.array([scores.max() for scores in frames["clean"]])
    clean_persistent = persistent_scores(frames["clean"], grid, params)
    fold_of = np.minimum(index * folds // index.size, folds - 1)
    out: dict[str, Any] = {"clean_alarmed": 0, "clean_frames": int(index.size), "thresholds": [],
                           "attacked": 0, "attacked_alarmed": 0, "windows": 0, "windows_alarmed": 0,
                           "single_attacked_alarmed": 0, "by_offset": {}, "full_exposure": 0,
                           "full_exposure_alarmed": 0, "full_exposure_single_alarmed": 0,
                           "windows_single_alarmed": 0}
    positives, negatives = [], []
    for fold in range(folds):
        train, test = fold_of != fold, fold_of == fold
        threshold = calibrate_joint_threshold(clean_persistent[train], clean_single[train] > single, rate)
        out["thresholds"].append(round(threshold, 3))
        alarmed = (clean_single > single) | (clean_persistent > threshold)
        out["clean_alarmed"] += int(alarmed[test].sum())
        negatives += clean_persistent[test].tolist()
        for start in range(0, index.size, hold):
            if fold_of[start] != fold:
                continue
            stop = min(start + hold, index.size)
            before = frames["clean"][max(0, start - params.window + 1):start]
            stream = persistent_scores(before + frames["attacked"][start:stop], grid, params)[len(before):]
            window_alarmed = window_single = False
            for offset, at in enumerate(range(start, stop)):
                if frames["changed"][at] < 1.0:
                    continue  # not an effective patch (changed < 1 % of f's pixels)
                hit_single = frames["attacked"][at].max() > single
                hit = bool(hit_single or stream[offset] > threshold)
                window_alarmed |= hit
                window_single |= bool(hit_single)
                out["attacked"] += 1
                out["attacked_alarmed"] += hit
                out["single_attacked_alarmed"] += bool(hit_single)
                counts = out["by_offset"].setdefault(offset, [0, 0])
                counts[0] += hit
                counts[1] += 1
                if offset >= params.window - 1:  # the patch has been there a whole window
                    positives.append(float(stream[offset]))
                    out["full_exposure"] += 1
                    out["full_exposure_alarmed"] += hit
                    out["full_exposure_single_alarmed"] += bool(hit_single)
            out["windows"] += 1
            out["windows_alarmed"] += window_alarmed
            out["windows_single_alarmed"] += window_single
    out["auc_persistent_full_exposure"] = roc_auc(negatives, positives)
    out["clean_single_alarmed"] = int((clean_single > single).sum())
    out["by_offset"] = {k: f"{v[0]}/{v[1]}" for k, v in sorted(out["by_offset"].items())}
    return out


def main() -> None:
    """Print one JSON line per run and parameter setting."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--calibration", type=Path,
                        default=Path("demasked_ros/models/alarm_calibration.json"))
    parser.add_argument("--window", type=int, nargs="+", default=[3])
    parser.add_argument("--spread", type=int, nargs="+", default=[1])
    parser.add_argument("--hold", type=int, default=5, help="the attack runs' --hold")
    parser.add_argument("--rate", type=float, default=0.01)
    parser.add_argument("--folds", type=int, default=2)
    args = parser.parse_args()
    for folder in args.runs:
        frames = position_scores(folder, args.calibration)
        for window in args.window:
            for spread in args.spread:
                result = evaluate(frames, TemporalParams(window=window, spread=spread), args.hold,
                                  args.rate, args.folds)
                print(json.dumps({"run": folder.name, "window": window, "spread": spread, **result}))


if __name__ == "__main__":
    main()
