"""The patch alarm on a drive the segmenter never saw: the figures of ``scripts/alarm_unseen_drive.sh``.

Reads that script's output folder (two ``demasked-calibrate`` runs and one ``demasked-attack`` run of the
fold-0016E5 model) and prints, in patch areas and frame counts:

* the clean score distribution on the model's own drives (what the shipped calibration is fitted on),
  on the unseen val clip, and on the unseen drive's 1 Hz train frames;
* the 1 % threshold fitted as shipped (own drives) and the one the unseen drive itself would need;
* clean frames alarmed on the unseen drive, and effective PGD patches (>= 1 % of f changed) alarmed,
  at each threshold, single-frame (the persistent rule needs the sequence attack).

    python benchmarks/alarm_unseen_drive.py runs/alarm_unseen
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from demasked_ros.core.alarm import calibrate_threshold, roc_auc

STAGE = "detection-column-None"


def records(folder: Path) -> list[dict[str, Any]]:
    """The ok records of a run folder's ``frames.jsonl``."""
    lines = (folder / "frames.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("status") == "ok"]


def clean_scores(folder: Path) -> np.ndarray:
    """Clean alarm scores of a run folder, one per frame."""
    seen: dict[int, float] = {}
    for record in records(folder):
        seen[int(record["index"])] = float(record["clean_score"])
    return np.array([seen[i] for i in sorted(seen)])


def describe(scores: np.ndarray) -> str:
    """n, median, 90th / 99th percentile and max as a table row fragment."""
    return (f"{len(scores)} | {np.median(scores):.2f} | {np.percentile(scores, 90):.2f} | "
            f"{np.percentile(scores, 99):.2f} | {scores.max():.2f}")


def main(argv: list[str] | None = None) -> int:
    """Print the tables; exit 2 when a folder is missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the output folder of scripts/alarm_unseen_drive.sh")
    parser.add_argument("--rate", type=float, default=0.01)
    args = parser.parse_args(argv)
    folders = {"own drives (0001TP + 0006R0 train, every 2nd)": args.out / "seen" / f"{STAGE}-calibration",
               "unseen: val clip of 0016E5, every 2nd": args.out / "seen" / f"{STAGE}-holdout",
               "unseen: val clip of 0016E5, every frame": args.out / "seen" / f"{STAGE}-temporal",
               "unseen: 0016E5 train frames, every 2nd": args.out / "unseen" / f"{STAGE}-calibration"}
    missing = [str(f) for f in [*folders.values(), args.out / "pgd30"] if not (f / "frames.jsonl").is_file()]
    if missing:
        print(f"alarm_unseen_drive: missing runs: {missing}", file=sys.stderr)
        return 2
    scores = {name: clean_scores(folder) for name, folder in folders.items()}
    names = list(scores)
    shipped_way = calibrate_threshold(list(scores[names[0]]), args.rate)
    unseen_pool = np.concatenate([scores[names[1]], scores[names[3]]])
    unseen_way = calibrate_threshold(list(unseen_pool), args.rate)
    attacked = [r for r in records(args.out / "pgd30") if float(r.get("f_changed_pct", 0.0)) >= 1.0]
    attacked_scores = np.array([float(r["score"]) for r in attacked])
    print("| clean frames | n | median | 90th pct. | 99th pct. | max |\n|---|---:|---:|---:|---:|---:|")
    for name in names:
        print(f"| {name} | {describe(scores[name])} |")
    if len(attacked_scores):
        print(f"| effective PGD-30 patches on val (attacked frames) | {describe(attacked_scores)} |")
    print(f"\n| threshold ({100 * args.rate:g} % clean) | value | unseen val clip alarmed | unseen 0016E5 "
          "train alarmed | effective PGD alarmed |\n|---|---:|---:|---:|---:|")
    for label, threshold in (("fitted on the own drives (as shipped)", shipped_way),
                             ("fitted on the unseen drive itself", unseen_way)):
        clip, train = scores[names[2]], scores[names[3]]
        print(f"| {label} | {threshold:.2f} | {int((clip > threshold).sum())}/{len(clip)} | "
              f"{int((train > threshold).sum())}/{len(train)} | "
              f"{int((attacked_scores > threshold).sum())}/{len(attacked_scores)} |")
    if len(attacked_scores):
        print(f"\nROC AUC, effective PGD vs the unseen clean frames: "
              f"{roc_auc(list(unseen_pool), list(attacked_scores)):.3f}")
    calibration = json.loads((args.out / "calibration.json").read_text())
    (entry,) = calibration["calibrations"].values()
    if entry.get("temporal"):
        clip_rate = entry["measured"]["clip_alarm_rate"]
        print(f"persistent threshold fitted on the unseen clip (joint, {100 * args.rate:g} %): "
              f"{entry['temporal']['threshold']:.2f}; clip alarm rate {clip_rate:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
