"""Latency (and optionally clean val mIoU) of the default segmenter at 480x360 with ONNX Runtime.

Prints per-frame latency of ``default_segmenter(threads=T)`` on CamVid val frames (or synthetic
frames when the data is absent): single frames and batches of K (the certifier's branch count).
Target: <= 60 ms per frame on 2 CPU threads. With ``--miou`` it also segments the whole CamVid
val split at 480x360 and prints mIoU, pixel accuracy and per-class IoU (via
``demasked_ros.core.metrics.CertificationMetrics``). Usage::

    .venv/bin/python benchmarks/bench_segmenter.py [--threads 2] [--repeats 30] [--batch 5]
        [--model PATH.onnx] [--miou] [--demasked] [--camvid DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from demasked_ros.core.classes import CAMVID
from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.core.metrics import CertificationMetrics
from demasked_ros.engines import defaults
from demasked_ros.engines.demaskers import TeleaDemasker
from demasked_ros.engines.segmenters import OnnxSegmenter

DEFAULT_CAMVID = Path(os.environ.get(
    "DEMASKED_CAMVID", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camvid"))


def val_frames(root: Path, limit: int | None = None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(RGB frame, labels) pairs from CamVid val, or 8 synthetic frames without labels."""
    names = sorted((root / "val").glob("*.png")) if (root / "val").is_dir() else []
    if not names:
        rng = np.random.default_rng(0)
        return [(rng.integers(0, 256, (360, 480, 3), dtype=np.uint8), None) for _ in range(8)]
    frames = []
    for path in names[:limit]:
        bgr = cv2.imread(str(path))
        if bgr is None:
            raise SystemExit(f"cannot read {path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        frames.append((rgb, cv2.imread(str(root / "valannot" / path.name), cv2.IMREAD_UNCHANGED)))
    return frames


def build(model: Path | None, threads: int) -> OnnxSegmenter:
    """The packaged default segmenter, or the same settings around another ONNX file."""
    if model is None:
        segmenter = defaults.default_segmenter(threads=threads)  # backend="onnx", the default
        if not isinstance(segmenter, OnnxSegmenter):
            raise SystemExit(f"expected the ONNX default segmenter, got {type(segmenter).__name__}")
        return segmenter
    return OnnxSegmenter(model, CAMVID.names, mean=defaults.DEFAULT_SEGMENTER_MEAN,
                         std=defaults.DEFAULT_SEGMENTER_STD, intra_op_threads=threads)


def time_calls(segmenter: OnnxSegmenter, batch: np.ndarray, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls after two warm-up calls."""
    for _ in range(2):
        segmenter.segment(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        segmenter.segment(batch)
        times.append(time.perf_counter() - start)
    return times


def report(label: str, seconds: list[float], frames: int) -> None:
    per_frame = [1000 * s / frames for s in seconds]
    print(f"{label:<28} median {statistics.median(per_frame):6.1f} ms/frame   "
          f"mean {statistics.fmean(per_frame):6.1f}   min {min(per_frame):6.1f}   "
          f"p90 {sorted(per_frame)[int(0.9 * (len(per_frame) - 1))]:6.1f}")


def evaluate(segmenter: OnnxSegmenter, frames: list[tuple[np.ndarray, np.ndarray | None]]) -> None:
    """Clean mIoU over the labelled frames at their native 480x360."""
    metrics = CertificationMetrics(CAMVID.num_classes, CAMVID.ignore_index, CAMVID.names)
    for image, truth in frames:
        if truth is None:
            print("no labels (CamVid absent): mIoU skipped")
            return
        labels = segmenter.segment(image[None])[0]
        metrics.add(labels, np.ones_like(labels, dtype=bool), truth)
    summary = metrics.summary()
    print(f"CamVid val clean: mIoU {summary['mIoU']:.2f} %  pixel accuracy {summary['accuracy']:.2f} %  "
          f"mR {summary['mR']:.2f} %  frames {summary['frames']}")
    for row in metrics.per_class():
        print(f"  {row['name']:<12} IoU {row['IoU']:6.2f} %   recall {row['recall']:6.2f} %")


def evaluate_demasked(segmenter: OnnxSegmenter, frames: list[tuple[np.ndarray, np.ndarray | None]]) -> None:
    """mIoU of single branches: each val frame under one mask (index = frame % K), TELEA-filled."""
    families = {"recovery column 0.5%": recovery_masks(360, 480, 0.005, "column"),
                "detection column 1%": detection_masks(360, 480, 0.01, "column")}
    demasker = TeleaDemasker()
    for label, masks in families.items():
        metrics = CertificationMetrics(CAMVID.num_classes, CAMVID.ignore_index, CAMVID.names)
        for index, (image, truth) in enumerate(frames):
            if truth is None:
                return
            visible = masks.visible[index % masks.k][None]
            filled = demasker.demask(np.where(visible[..., None], image[None], 0).astype(np.uint8), visible)
            labels = segmenter.segment(filled)[0]
            metrics.add(labels, np.ones_like(labels, dtype=bool), truth)
        summary = metrics.summary()
        print(f"CamVid val, one TELEA-demasked branch per frame ({label}, K={masks.k}): "
              f"mIoU {summary['mIoU']:.2f} %  pixel accuracy {summary['accuracy']:.2f} %")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="ONNX file (default: packaged)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5, help="K frames per call in the batch test")
    parser.add_argument("--miou", action="store_true", help="also evaluate clean mIoU on CamVid val")
    parser.add_argument("--demasked", action="store_true",
                        help="also evaluate mIoU of single TELEA-demasked branches (needs --miou data)")
    parser.add_argument("--camvid", type=Path, default=DEFAULT_CAMVID)
    args = parser.parse_args(argv)
    segmenter = build(args.model, args.threads)
    frames = val_frames(args.camvid, None if args.miou or args.demasked else 8)
    print(f"model {segmenter.model_path} ({segmenter.model_path.stat().st_size / 1e6:.2f} MB), "
          f"{args.threads} ORT threads, providers {segmenter.providers}, frames 480x360")
    images = np.stack([f[0] for f in frames[: max(args.batch, 1)]])
    report("single frame", time_calls(segmenter, images[:1], args.repeats), 1)
    if args.batch > 1 and len(images) >= args.batch:
        report(f"batch of {args.batch}", time_calls(segmenter, images[: args.batch],
                                                    max(3, args.repeats // args.batch)), args.batch)
    if args.miou:
        evaluate(segmenter, frames)
    if args.demasked:
        evaluate_demasked(segmenter, frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
