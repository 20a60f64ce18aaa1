"""Trade-off of the automatic working resolution: certify less, faster, at a lower pixel budget.

Camera frames are CamVid val frames upscaled ``--scale`` times (a 480x360 frame becomes 960x720
at scale 2, a higher-resolution camera seeing the same scene). For each ``working_max_pixels``
budget the frame is resized (aspect kept, :func:`~demasked_ros.core.resize.fit_within`) before
masking, the patch (``--patch-fraction`` of the *camera* area) is widened to the resize's
footprint, and the frame is certified with the packaged models at that size. Prints per budget:
working size, original and widened patch (and the widened patch as a share of the working frame:
wider effective patch, less certified), K, certify time, %C (certified pixels) and certified
accuracy (certified and correct, over labelled pixels).

CamVid val is one clip of a sequence that also fills half of train (there is no held-out sequence
in this copy), so accuracies are optimistic; the *differences* between budgets are the point.

Usage::

    .venv/bin/python benchmarks/bench_working_tradeoff.py [--frames 4] [--scale 2]
        [--budgets 0 307200 172800 76800]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demasked_ros.core.masks import recovery_masks
from demasked_ros.core.resize import fit_within
from demasked_ros.core.threat import patch_shape
from demasked_ros.datasets.camvid import CamVidSource, find_camvid_root
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.defaults import default_demasker, default_segmenter
from demasked_ros.engines.resizing import FrameResizer


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=4, help="CamVid val frames, spread over the clip")
    parser.add_argument("--scale", type=int, default=2, help="camera = CamVid frame upscaled this much")
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 307200, 172800, 76800],
                        help="working_max_pixels values (0: certify at the camera size)")
    parser.add_argument("--patch-fraction", type=float, default=0.005)
    parser.add_argument("--scheme", default="column")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def main() -> int:
    args = parse()
    root = find_camvid_root()
    if root is None:
        print("bench_working_tradeoff: CamVid not found", file=sys.stderr)
        return 1
    source = CamVidSource(root, "val")
    picks = set(np.linspace(0, len(source) - 1, args.frames).astype(int).tolist())
    frames = [f for f in source if f.index in picks]
    segmenter, demasker = default_segmenter(threads=args.threads), default_demasker(threads=args.threads)
    print(f"bench_working_tradeoff: {len(frames)} CamVid val frames x{args.scale} "
          f"({frames[0].image.shape[1] * args.scale}x{frames[0].image.shape[0] * args.scale} camera), "
          f"patch {args.patch_fraction:g} of the camera area, {args.scheme} recovery, default models")
    print(f"  {'budget':>8s} {'working':>9s} {'patch':>9s} {'widened':>9s} {'share':>6s} {'K':>3s} "
          f"{'certify s':>10s} {'%C':>6s} {'cert.acc':>8s}")
    for budget in args.budgets:
        seconds, certified, correct = [], [], []
        row = ""
        for frame in frames:
            assert frame.labels is not None
            h, w = frame.image.shape[0] * args.scale, frame.image.shape[1] * args.scale
            camera = cv2.resize(frame.image, (w, h), interpolation=cv2.INTER_LINEAR)
            truth = cv2.resize(frame.labels, (w, h), interpolation=cv2.INTER_NEAREST)
            patch = patch_shape(h, w, args.patch_fraction)
            working = fit_within((h, w), budget) if budget else None
            resizer = FrameResizer((h, w), working) if working else None
            widened = resizer.patch(patch) if resizer else patch
            wh, ww = working or (h, w)
            masks = recovery_masks(wh, ww, widened, args.scheme)
            certifier = Certifier(segmenter, demasker, masks)
            start = time.perf_counter()
            result = certifier.certify(resizer.resize(camera) if resizer else camera)
            seconds.append(time.perf_counter() - start)
            labels, cert = result.labels, result.certified
            if resizer:
                labels = resizer.upscale_labels(labels.astype(np.uint8))
                cert = resizer.upscale_labels(cert.astype(np.uint8)).astype(bool)
            valid = truth != 11
            certified.append(float(cert.mean()))
            correct.append(float((cert & (labels == truth) & valid).sum() / max(1, valid.sum())))
            share = 100.0 * widened[0] * widened[1] / (wh * ww)
            row = (f"  {budget or 'native':>8} {wh}x{ww:<5d} {patch[0]}x{patch[1]:<5d} "
                   f"{widened[0]}x{widened[1]:<5d} {share:5.2f}% {masks.k:3d}")
        print(f"{row} {statistics.median(seconds):10.2f} {100 * np.mean(certified):6.1f} "
              f"{100 * np.mean(correct):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
