"""Soundness audit at scale: many patch placements on CamVid val, every one re-certified and compared.

For each frame the clean frame is certified once with the product ONNX ``Certifier`` (default models,
default masks per mode); then ``--placements`` random patches (uniform noise and natural crops from
other frames, alternating) are pasted and re-certified, plus PGD patches on f for a subset. Any pixel
certified on the clean frame whose label changes (recovery), or verified on both frames with a changed
label (detection), is a violation: it is printed with frame and position and makes the exit code 1.

Re-certification defaults to ``changed`` (only branches whose masked input differs byte-wise are re-run;
see :class:`demasked_ros.attacks.audit.Recertifier`), spot-checked against the full pipeline every
``--spot-check`` placements (a mismatch is an error too). ``--scale 0.5`` audits 240x180 frames (the
patch is the same fraction of the frame area) to fit the CPU budget.

    nice -n 19 python benchmarks/bench_audit.py --placements 10000 --scale 0.5 --out runs/audit.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from demasked_ros.attacks.audit import Recertifier, audit
from demasked_ros.attacks.baselines import natural_contents, noise_contents
from demasked_ros.attacks.placement import paste, random_placement
from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.datasets.base import open_dataset
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.defaults import default_demasker, default_segmenter

PATCH = {"recovery": 0.005, "detection": 0.01}


def frames(path: str, scale: float, limit: int | None) -> list[np.ndarray]:
    """Val frames, area-downscaled by ``scale``."""
    images = []
    for frame in open_dataset(path):
        image = frame.image
        if scale != 1.0:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        images.append(np.ascontiguousarray(image))
        if limit is not None and len(images) >= limit:
            break
    return images


def audit_mode(mode: str, images: list[np.ndarray], args: argparse.Namespace) -> dict[str, Any]:
    """Audit ``args.placements`` random placements (+ PGD on a subset) for one mode."""
    height, width = images[0].shape[:2]
    masks = (recovery_masks(height, width, PATCH[mode], "column") if mode == "recovery"
             else detection_masks(height, width, PATCH[mode], "column"))
    recertifier = Recertifier(Certifier(default_segmenter(threads=1), default_demasker(threads=1), masks))
    rng = np.random.default_rng(args.seed)
    per_frame = -(-args.placements // len(images))
    totals: dict[str, Any] = {"mode": mode, "frame": f"{height}x{width}", "patch": list(masks.patch),
                              "k": masks.k, "placements": 0, "pgd_placements": 0, "violations": 0,
                              "spot_checks": 0, "spot_mismatches": 0, "branches_rerun": 0,
                              "violation_examples": []}
    started = time.perf_counter()
    pipe = None
    for index, image in enumerate(images):
        clean = recertifier.full(image)
        for number in range(per_frame):
            if totals["placements"] >= args.placements:
                break
            placement = random_placement(rng, height, width, masks.patch)
            if number % 2:
                donor = images[(index + 1 + int(rng.integers(len(images) - 1))) % len(images)]
                contents = natural_contents(rng, placement, [donor])
            else:
                contents = noise_contents(rng, placement)
            attacked = paste(image, placement, contents)
            result, rerun = recertifier.changed(image, clean, attacked)
            totals["branches_rerun"] += rerun
            if args.spot_check and totals["placements"] % args.spot_check == 0:
                full = recertifier.full(attacked)
                totals["spot_checks"] += 1
                same = (np.array_equal(full.labels, result.labels)
                        and np.array_equal(full.certified, result.certified))
                totals["spot_mismatches"] += int(not same)
            _count(totals, audit(clean, result), index, placement.to_json(), "random")
            totals["placements"] += 1
        if totals["pgd_placements"] < args.pgd:
            pipe = pipe or _pipeline()
            placement = random_placement(rng, height, width, masks.patch)
            attacked = _pgd(pipe, image, placement, args.pgd_steps)
            _count(totals, audit(clean, recertifier.full(attacked)), index, placement.to_json(), "pgd")
            totals["pgd_placements"] += 1
        elapsed = time.perf_counter() - started
        totals.update(seconds=elapsed, frames_done=index + 1)
        if args.out is not None:  # partial results survive an interrupted run
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.with_suffix(f".{mode}.partial.json").write_text(json.dumps(totals, indent=2))
        if not args.quiet:
            print(f"{mode}: frame {index + 1}/{len(images)}, {totals['placements']} placements, "
                  f"{totals['violations']} violations, {totals['placements'] / elapsed:.1f}/s",
                  file=sys.stderr, flush=True)
        if totals["placements"] >= args.placements and totals["pgd_placements"] >= args.pgd:
            break
    seconds = time.perf_counter() - started
    done = totals["placements"] + totals["pgd_placements"]
    totals.update(seconds=seconds, placements_per_s=done / seconds)
    return totals


def _pipeline() -> Any:
    import torch

    from demasked_ros.attacks.torch_models import TorchPipeline

    torch.set_num_threads(1)
    return TorchPipeline.default()


def _pgd(pipe: Any, image: np.ndarray, placement: Any, steps: int) -> np.ndarray:
    from demasked_ros.attacks.pgd import PGDConfig, attacked_frame, optimise_patch, untargeted

    objective = untargeted(pipe, pipe.labels(image))
    result = optimise_patch(pipe, image, placement, objective, PGDConfig(steps=steps))
    return attacked_frame(image, placement, result)


def _count(totals: dict[str, Any], counts: Any, index: int, boxes: list[list[int]], kind: str) -> None:
    if counts.violations:
        totals["violations"] += counts.violations
        example = {"frame": index, "placement": boxes, "kind": kind, "pixels": counts.positions}
        totals["violation_examples"].append(example)
        print(f"VIOLATION: {json.dumps(example)}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the audit; exit 1 when any violation (or a spot-check mismatch) was found."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/camvid/val")
    parser.add_argument("--modes", nargs="+", default=["recovery", "detection"])
    parser.add_argument("--placements", type=int, default=10000, help="random placements per mode")
    parser.add_argument("--pgd", type=int, default=10, help="PGD placements per mode (one per frame)")
    parser.add_argument("--pgd-steps", type=int, default=100)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--spot-check", type=int, default=50, help="full re-certification every N (0: never)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    images = frames(args.data, args.scale, args.frames)
    results = [audit_mode(mode, images, args) for mode in args.modes]
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return int(any(r["violations"] or r["spot_mismatches"] for r in results))


if __name__ == "__main__":
    sys.exit(main())
