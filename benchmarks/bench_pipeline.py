"""Per-stage timings of the certification pipeline and its overhead over the bare model calls.

For 480x360 frames, recovery (column, 0.5 % patch, K=5) and detection (columns, 1 % patch, the
default band width): prints time per stage (masking, demasking, segmentation, aggregation) and

    overhead = whole certify() time / (the same demasker and segmenter calls timed alone)

Target: overhead <= 1.10. Usage::

    .venv/bin/python benchmarks/bench_pipeline.py [--segmenter default|tiny|PATH.onnx]
        [--demasker default|telea|ns|solid|learned] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from demasked_ros.core.classes import CAMVID
from demasked_ros.core.masks import MaskSet, detection_masks, recovery_masks
from demasked_ros.engines.certifier import Certifier, mask_images
from demasked_ros.engines.factory import DEMASKER_NAMES, make_demasker
from demasked_ros.engines.protocols import Demasker, Segmenter
from demasked_ros.engines.segmenters import OnnxSegmenter

HEIGHT, WIDTH = 360, 480


def load_frame() -> np.ndarray:
    """A CamVid val frame when the data is present, else a procedural street scene or noise."""
    camvid = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid" / "val"
    frames = sorted(camvid.glob("*.png")) if camvid.is_dir() else []
    if frames:
        import cv2

        bgr = cv2.imread(str(frames[0]))
        if bgr is not None:
            return np.ascontiguousarray(bgr[..., ::-1])
    try:  # no CamVid here: a procedural street scene
        from demasked_ros.datasets.procedural import street_scene

        return street_scene(0, HEIGHT, WIDTH)[0]
    except ImportError:
        return np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def tiny_segmenter(folder: Path) -> Segmenter:
    """A 3x3-conv ONNX model with 11 classes, for measuring pure pipeline overhead."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.tiny_models import write_conv_model

    return OnnxSegmenter(write_conv_model(folder / "tiny.onnx", num_classes=11), CAMVID.names)


def time_alone(segmenter: Segmenter, demasker: Demasker, masks: MaskSet, image: np.ndarray) -> float:
    """Seconds for just the demasker and segmenter calls that one certify() makes."""
    masked = mask_images(image, masks.visible)
    start = time.perf_counter()
    demasked = demasker.demask(masked, masks.visible)
    segmenter.segment(demasked)
    if masks.mode == "detection":
        segmenter.segment(image[None])
    return time.perf_counter() - start


def bench(name: str, segmenter: Segmenter, demasker: Demasker, masks: MaskSet, image: np.ndarray,
          repeats: int) -> None:
    """Print stage timings and the overhead ratio for one configuration."""
    certifier = Certifier(segmenter, demasker, masks)
    certifier.certify(image)  # warm-up
    totals, alones, stages = [], [], []
    for _ in range(repeats):
        alones.append(time_alone(segmenter, demasker, masks, image))
        result = certifier.certify(image)
        totals.append(result.timings["total"])
        stages.append(result.timings)
    print(f"\n{name}: {masks.describe()}")
    for stage in ("masking", "demasking", "segmentation", "aggregation", "total"):
        values = [s[stage] * 1000 for s in stages]
        print(f"  {stage:<13} {statistics.median(values):8.1f} ms (median of {repeats})")
    total, alone = statistics.median(totals), statistics.median(alones)
    print(f"  model calls alone {alone * 1000:8.1f} ms")
    print(f"  overhead ratio    {total / alone:8.3f}   (target <= 1.10)")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segmenter", default="default", help="default | tiny | PATH.onnx (CamVid classes)")
    parser.add_argument("--demasker", default="default", choices=DEMASKER_NAMES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    image = load_frame()
    with tempfile.TemporaryDirectory() as folder:
        if args.segmenter == "tiny":
            segmenter = tiny_segmenter(Path(folder))
        elif args.segmenter == "default":
            from demasked_ros.engines.defaults import default_segmenter

            segmenter = default_segmenter(threads=args.threads)
        else:
            segmenter = OnnxSegmenter(args.segmenter, CAMVID.names, intra_op_threads=args.threads)
        demasker = make_demasker(args.demasker, threads=args.threads)
        print(f"segmenter: {args.segmenter}  demasker: {type(demasker).__name__}  frame: {image.shape}")
        bench("recovery", segmenter, demasker, recovery_masks(HEIGHT, WIDTH, 0.005, "column"), image,
              args.repeats)
        bench("detection", segmenter, demasker, detection_masks(HEIGHT, WIDTH, 0.01, "column"), image,
              args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
