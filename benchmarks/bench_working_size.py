"""Benchmark: the node's certify path at the camera resolution vs. at a lower working resolution.

Builds the node's :class:`FrameCertifier` (the same code the ROS node runs per frame, no ROS
involved) for a procedural camera frame, once at the native size and once per working height, and
prints the certify time, the original and widened patch, K and the certified fraction.

Usage::

    .venv/bin/python benchmarks/bench_working_size.py [--camera 1080x1920] [--working 540 270]
        [--segmenter default|colour] [--demasker telea] [--repeats 3] [--skip-native]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demasked_ros.apps.node.models import load_models
from demasked_ros.apps.node.params import config_from_values
from demasked_ros.apps.node.resolution import build_frame_certifier
from demasked_ros.datasets.procedural import street_scene


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--camera", default="1080x1920", help="camera frame HxW (default 1080x1920)")
    parser.add_argument("--working", type=int, nargs="+", default=[540, 270],
                        help="working heights to compare (aspect ratio kept)")
    parser.add_argument("--segmenter", choices=("default", "colour"), default="default",
                        help="default: the packaged CamVid model; colour: a cheap colour rule")
    parser.add_argument("--demasker", default="telea")
    parser.add_argument("--patch-fraction", type=float, default=0.005)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-native", action="store_true", help="do not time the native size")
    return parser.parse_args()


def main() -> int:
    args = parse()
    height, width = (int(v) for v in args.camera.lower().split("x"))
    frame, _ = street_scene(seed=1, height=height, width=width)
    values: dict[str, object] = {"demasker": args.demasker, "threads": args.threads,
                                 "patch_fraction": args.patch_fraction, "executor": "cpu"}
    if args.segmenter == "colour":
        values["segmenter_plugin"] = "demasked_ros.apps.node.demo:fallback_segmenter"
    models = load_models(config_from_values(values))
    print(f"bench_working_size: camera {height}x{width}, {args.segmenter} segmenter, {args.demasker} "
          f"demasker, threads={args.threads}, patch_fraction={args.patch_fraction:g}, "
          f"median of {args.repeats}")
    sizes = ([] if args.skip_native else [0]) + list(args.working)
    for working_height in sizes:
        config = config_from_values({**values, "working_height": working_height})
        certifier = build_frame_certifier(config, models, height, width)
        plan = certifier.plan
        certifier.certify(frame)  # warm-up
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = certifier.certify(frame)
            seconds.append(time.perf_counter() - start)
        working = "native" if plan.resizer is None else f"{plan.working_hw[0]}x{plan.working_hw[1]}"
        print(f"  working {working:>10}  patch {plan.patch[0]}x{plan.patch[1]} -> "
              f"{plan.working_patch[0]}x{plan.working_patch[1]}  K={plan.masks.k}  "
              f"certify {statistics.median(seconds) * 1000:8.1f} ms  "
              f"certified {result.certified_fraction:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
