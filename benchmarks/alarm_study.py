"""Patch-alarm study: ROC, AUC and alarm rates from saved (clean, attacked) branch labels.

Reads the ``branches/*.npz`` files that ``demasked-attack --save-branches`` writes (clean and attacked
branch labels, outputs and the placement) together with the run's ``frames.jsonl`` (for how much of
f the patch changed), re-scores both frames with :func:`demasked_ros.core.alarm.patch_evidence` (so the
alarm parameters can be studied without re-certifying), and prints per run: frames, AUC (clean frames
vs attacked placements, all and effective ones, i.e. >= 1 % of f's pixels changed), the alarm rate on
clean frames and on attacked ones at the calibrated threshold, and how often the suspected patch
overlaps the real one. ``--figure`` draws the ROC curves.

    python benchmarks/alarm_study.py runs/attack_lab/pgd-detection runs/attack_lab/random-detection \\
        --calibration demasked_ros/models/alarm_calibration.json --figure docs/figures/alarm_roc.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from demasked_ros.core.alarm import (
    AlarmGeometry,
    AlarmParams,
    calibration_key,
    load_calibrations,
    patch_evidence,
    roc_auc,
    roc_curve,
)
from demasked_ros.core.masks import detection_masks, recovery_masks

PATCH = {"recovery": 0.005, "detection": 0.01}


def load_pairs(folder: Path) -> list[dict[str, Any]]:
    """The saved pairs of a run folder, with ``f_changed_pct`` from its JSONL when present."""
    changed: dict[str, float] = {}
    jsonl = folder / "frames.jsonl"
    if jsonl.is_file():
        for line in jsonl.read_text().splitlines():
            record = json.loads(line)
            if record.get("status") == "ok" and record.get("f_changed_pct") is not None:
                changed[f"{int(record['index']):06d}_{record['config']}"] = float(record["f_changed_pct"])
    pairs = []
    for path in sorted((folder / "branches").glob("*.npz")):
        data = np.load(path)
        pairs.append({"name": path.stem, "clean_branches": data["clean_branches"],
                      "clean_labels": data["clean_labels"], "branches": data["branches"],
                      "labels": data["labels"], "placement": data["placement"].tolist(),
                      "f_changed_pct": changed.get(path.stem)})
    return pairs


def study(folder: Path, mode: str, params: AlarmParams, threshold: float | None) -> dict[str, Any]:
    """Scores and figures for one run folder."""
    pairs = load_pairs(folder)
    if not pairs:
        raise SystemExit(f"{folder}: no branches/*.npz (run demasked-attack with --save-branches)")
    height, width = pairs[0]["labels"].shape
    masks = (recovery_masks(height, width, PATCH[mode], "column") if mode == "recovery"
             else detection_masks(height, width, PATCH[mode], "column"))
    geometry = AlarmGeometry(masks, params)
    clean: dict[str, float] = {}
    attacked, effective, hits = [], [], []
    for pair in pairs:
        frame = pair["name"].split("_")[0]
        if frame not in clean:
            clean[frame] = patch_evidence(pair["clean_branches"], pair["clean_labels"], geometry).score
        evidence = patch_evidence(pair["branches"], pair["labels"], geometry)
        attacked.append(evidence.score)
        if pair["f_changed_pct"] is not None and pair["f_changed_pct"] >= 1.0:
            effective.append(evidence.score)
            y, x, h, w = pair["placement"][0]
            roi = evidence.roi
            hits.append(roi is not None and roi[0] < y + h and y < roi[0] + roi[2]
                        and roi[1] < x + w and x < roi[1] + roi[3])
    clean_scores = list(clean.values())

    def rate(scores: list[float]) -> float | None:
        return None if threshold is None or not scores else float(np.mean(np.asarray(scores) > threshold))

    return {"run": folder.name, "key": calibration_key(masks), "clean_frames": len(clean_scores),
            "placements": len(attacked), "effective": len(effective),
            "auc_all": roc_auc(clean_scores, attacked),
            "auc_effective": roc_auc(clean_scores, effective) if effective else None,
            "alarm_rate_clean": rate(clean_scores), "alarm_rate_attacked": rate(attacked),
            "alarm_rate_effective": rate(effective),
            "roi_hit_effective": float(np.mean(hits)) if hits else None, "threshold": threshold,
            "_clean": clean_scores, "_attacked": attacked, "_effective": effective}


def main() -> None:
    """Print a table (and draw the ROC figure)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="demasked-attack output folders")
    parser.add_argument("--calibration", type=Path, default=None)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    calibrations = load_calibrations(args.calibration) if args.calibration else {}
    results = []
    for folder in args.runs:
        if not list((folder / "branches").glob("*.npz")):
            print(f"skipping {folder}: no branches/*.npz", file=sys.stderr)
            continue
        mode = "detection" if "detection" in folder.name else "recovery"
        probe = study(folder, mode, AlarmParams(), None)
        entry = next((c for k, c in calibrations.items() if k.startswith(probe["key"])), None)
        results.append(probe if entry is None else study(folder, mode, entry.params, entry.threshold))
    # Clean frames are pooled over the runs of a mode (the same val frames, clean): a better estimate
    # of the clean score distribution than each run's own few frames.
    for result in results:
        pooled = {score for other in results if other["key"] == result["key"] for score in other["_clean"]}
        result["_clean"] = sorted(pooled)
        result["clean_frames_pooled"] = len(pooled)
        result["auc_all"] = roc_auc(result["_clean"], result["_attacked"])
        effective = result["_effective"]
        result["auc_effective"] = roc_auc(result["_clean"], effective) if effective else None
        if result["threshold"] is not None:
            result["alarm_rate_clean"] = float(np.mean(np.asarray(result["_clean"]) > result["threshold"]))
    for result in results:
        print(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}))
    if args.figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(4.2, 4.0), dpi=90)
        for result in results:
            scores = result["_effective"] or result["_attacked"]
            fpr, tpr = roc_curve(result["_clean"], scores)
            label = "effective" if result["_effective"] else "all"
            auc = roc_auc(result["_clean"], scores)
            axis.plot(fpr, tpr, label=f"{result['run']} ({label}, AUC {auc:.2f})")
        axis.plot([0, 1], [0, 1], color="grey", linewidth=0.5, linestyle="--")
        axis.set_xlabel("false-alarm rate (clean val frames)")
        axis.set_ylabel("detection rate (attacked)")
        axis.legend(fontsize=6, loc="lower right")
        figure.tight_layout()
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.figure)


if __name__ == "__main__":
    main()
