"""Fold table: each held-out CamVid sequence's figures and their mean (``demasked-train evaluate-folds``).

For every leave-one-sequence-out fold (:mod:`demasked_ros.training.folds`) the fold's model
certifies every ``--every``-th frame of its held-out sequence under the node's two default
configurations (recovery column masks at 0.5 % patch, detection column bands at 1 % patch), with
the product's own :class:`~demasked_ros.engines.certifier.Certifier` and the evaluator's metric
accumulator (:class:`~demasked_ros.core.metrics.CertificationMetrics`: no metric is re-implemented
here). Reported per fold: clean mIoU, recovery %C, detection %C, detection FAR and detection
certified recall of car, pedestrian and bicyclist; then the unweighted mean over the folds.

``--segmenter`` / ``--demasker`` may contain ``{fold}``, replaced by the held-out sequence, so each
fold is scored with the model trained without it. A model trained on every sequence (e.g. the
shipped one) can be scored too, but its figures are not held-out figures: the table says so.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demasked_ros.core.classes import CAMVID
from demasked_ros.core.masks import MaskSet, detection_masks, recovery_masks
from demasked_ros.core.metrics import CertificationMetrics, nan_mean
from demasked_ros.datasets.camvid import CamVidSource
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.protocols import Segmenter
from demasked_ros.training.consistency import Filler, make_filler
from demasked_ros.training.data import TrainingDataError, default_camvid_root
from demasked_ros.training.folds import FOLD_SEQUENCES, Fold, fold_for

#: The two configurations of the fold table: (name, mask factory for an H x W frame).
CONFIGS: dict[str, Any] = {
    "recovery": lambda h, w: recovery_masks(h, w, 0.005, "column"),
    "detection": lambda h, w: detection_masks(h, w, 0.01, "column"),
}
#: Classes whose detection certified recall the table reports.
REPORTED_CLASSES = ("car", "pedestrian", "bicyclist")
COLUMNS = ("clean mIoU", "recovery %C", "detection %C", "detection FAR",
           *(f"cert. recall {name}" for name in REPORTED_CLASSES))


def load_segmenter(spec: str, threads: int = 1) -> Segmenter:
    """``default`` (the shipped model) or an ``.onnx`` file; normalisation from its metadata."""
    from demasked_ros.engines.defaults import default_segmenter
    from demasked_ros.engines.segmenters import IMAGENET_MEAN, IMAGENET_STD, OnnxSegmenter

    if spec == "default":
        return default_segmenter(threads=threads)
    if not spec.endswith(".onnx") or not Path(spec).is_file():
        raise TrainingDataError(f"segmenter {spec!r}: give 'default' or an existing .onnx file")
    import onnx

    metadata = {p.key: p.value for p in onnx.load(spec, load_external_data=False).metadata_props}
    mean = json.loads(metadata.get("mean", json.dumps(list(IMAGENET_MEAN))))
    std = json.loads(metadata.get("std", json.dumps(list(IMAGENET_STD))))
    return OnnxSegmenter(spec, class_names=CAMVID.names, mean=mean, std=std, intra_op_threads=threads)


def evaluate_fold(fold: Fold, root: Path, segmenter: Segmenter, demasker: Filler,
                  every: int = 1) -> dict[str, Any]:
    """Certify the fold's held-out frames under both configurations; one row of the fold table."""
    refs = fold.held_out[:: max(1, every)]
    metrics = {name: CertificationMetrics(CAMVID.num_classes, CAMVID.ignore_index, CAMVID.names)
               for name in CONFIGS}
    certifiers: dict[tuple[str, int, int], Certifier] = {}
    started = time.perf_counter()
    for split in sorted({split for split, _ in refs}):
        names = [name for s, name in refs if s == split]
        for frame in CamVidSource(root, split, names=names):
            assert frame.labels is not None
            height, width = frame.image.shape[:2]
            for name, factory in CONFIGS.items():
                key = (name, height, width)
                if key not in certifiers:
                    masks: MaskSet = factory(height, width)
                    certifiers[key] = Certifier(segmenter, demasker, masks)
                result = certifiers[key].certify(frame.image)
                metrics[name].add(result.labels, result.certified, frame.labels)
    return fold_row(fold.held_out_sequence, metrics["recovery"], metrics["detection"],
                    seconds=time.perf_counter() - started)


def fold_row(sequence: str, recovery: CertificationMetrics, detection: CertificationMetrics,
             seconds: float = float("nan")) -> dict[str, Any]:
    """One row of the table from the two accumulators (percentages 0-100)."""
    rec, det = recovery.summary(), detection.summary()
    per_class = {row["name"]: row for row in detection.per_class()}
    row: dict[str, Any] = {"fold": sequence, "frames": det["frames"], "seconds": round(seconds, 1),
                           "clean mIoU": det["mIoU"], "recovery %C": rec["pct_certified"],
                           "detection %C": det["pct_certified"], "detection FAR": det["FAR"]}
    for name in REPORTED_CLASSES:
        row[f"cert. recall {name}"] = per_class[name]["certified_recall"]
    return row


def mean_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean over the folds (each drive counts once, whatever its length)."""
    out: dict[str, Any] = {"fold": "mean", "frames": sum(r["frames"] for r in rows)}
    for column in COLUMNS:
        values = [float(r[column]) for r in rows]
        out[column] = nan_mean(np.asarray(values))
    return out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of the rows (numbers with two decimals)."""
    header = "| fold (held out) | frames | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(COLUMNS)]
    for row in rows:
        cells = [f"{row[c]:.2f}" if not math.isnan(row[c]) else "n/a" for c in COLUMNS]
        lines.append(f"| {row['fold']} | {row['frames']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``demasked-train evaluate-folds``."""
    p = argparse.ArgumentParser(prog="demasked-train evaluate-folds", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="CamVid root (default ../shared/data/camvid)")
    p.add_argument("--segmenter", default="runs/loso_{fold}/segmenter.onnx",
                   help="'default' or an .onnx path; {fold} = held-out sequence")
    p.add_argument("--demasker", default="default", help="default | telea | X.onnx | X.pt; {fold} allowed")
    p.add_argument("--folds", nargs="+", default=list(FOLD_SEQUENCES),
                   help=f"held-out sequences to score (default: {' '.join(FOLD_SEQUENCES)})")
    p.add_argument("--every", type=int, default=1, help="score every Nth held-out frame")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON (and resume from it)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Print the fold table; 0 on success, 2 on missing data or models."""
    args = build_parser().parse_args(argv)
    root = args.data or default_camvid_root()
    done: dict[str, dict[str, Any]] = {}
    if args.out is not None and args.out.is_file():
        done = {row["fold"]: row for row in json.loads(args.out.read_text())["folds"]}
    rows = []
    try:
        for sequence in args.folds:
            segmenter_spec = args.segmenter.replace("{fold}", sequence)
            if sequence in done and done[sequence].get("segmenter") == segmenter_spec:
                rows.append(done[sequence])
                continue
            segmenter = load_segmenter(segmenter_spec, args.threads)
            demasker = make_filler(args.demasker.replace("{fold}", sequence), args.threads)
            row = evaluate_fold(fold_for(root, sequence), root, segmenter, demasker, args.every)
            row.update(segmenter=segmenter_spec, demasker=args.demasker.replace("{fold}", sequence),
                       every=args.every)
            rows.append(row)
            print(f"{sequence}: {json.dumps(row)}", flush=True)
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"folds": rows}, indent=1))
    except (TrainingDataError, FileNotFoundError) as error:
        print(f"evaluate-folds: {error}", file=sys.stderr)
        return 2
    table = [*rows, mean_row(rows)] if len(rows) > 1 else rows
    if "{fold}" not in args.segmenter:
        print(f"note: one segmenter ({args.segmenter}) for every fold: unless it was trained without "
              "these sequences, these are NOT held-out figures")
    print(format_table(table))
    if args.out is not None:
        args.out.write_text(json.dumps({"folds": rows, "mean": table[-1]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
