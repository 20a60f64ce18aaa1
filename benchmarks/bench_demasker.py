"""Learned demasker vs OpenCV TELEA: masked-pixel PSNR on CamVid val, latency, optional %C.

Prints, for the node's default mask families (recovery column K=5 at 0.5 % patch, detection
column bands at 1 % patch) and a few others, the mean PSNR over the masked pixels of every
(val frame, mask) pair, and the demasking latency per 480x360 image on ``--threads`` CPU threads.
With ``--certify N`` and the default segmenter installed, also the certified quality
(%C = certified and correct pixels) on N val frames with each demasker.

Targets (issue 3): learned PSNR > TELEA PSNR; <= 30 ms per image on 2 threads. Usage::

    .venv/bin/python benchmarks/bench_demasker.py [--model PATH] [--frames 20] [--extra-frames 5]
        [--threads 2] [--certify 20] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from demasked_ros.core.masks import MaskSet, detection_masks, recovery_masks
from demasked_ros.engines.demaskers import TeleaDemasker
from demasked_ros.engines.learned_demasker import DEFAULT_DEMASKER_PATH, LearnedDemasker
from demasked_ros.engines.protocols import Demasker

HEIGHT, WIDTH = 360, 480
CAMVID = Path(os.environ.get("DEMASKED_CAMVID",
                             Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camvid"))


def mask_families(extra: bool) -> dict[str, MaskSet]:
    """The node's default families first, then (``extra``) other schemes the model generalises to."""
    families = {
        "recovery column 0.5% (default)": recovery_masks(HEIGHT, WIDTH, 0.005, "column"),
        "detection column 1% (default)": detection_masks(HEIGHT, WIDTH, 0.01, "column"),
    }
    if extra:
        families |= {
            "recovery row 0.5%": recovery_masks(HEIGHT, WIDTH, 0.005, "row"),
            "recovery 3-mask 0.5%": recovery_masks(HEIGHT, WIDTH, 0.005, "3-mask"),
            "recovery 4-mask 0.5%": recovery_masks(HEIGHT, WIDTH, 0.005, "4-mask"),
            "recovery column 2%": recovery_masks(HEIGHT, WIDTH, 0.02, "column"),
            "detection row 1%": detection_masks(HEIGHT, WIDTH, 0.01, "row"),
            "detection column 0.5%": detection_masks(HEIGHT, WIDTH, 0.005, "column"),
        }
    return families


def load_val(frames: int) -> tuple[list[str], list[np.ndarray]]:
    """``frames`` CamVid val frames evenly spread over the split (0 = all), RGB uint8."""
    paths = sorted((CAMVID / "val").glob("*.png"))
    if not paths:
        sys.exit(f"CamVid val not found under {CAMVID} (set DEMASKED_CAMVID)")
    if 0 < frames < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, frames).round().astype(int)]
    images = [cv2.cvtColor(read(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in paths]
    return [p.name for p in paths], images


def read(path: Path, flags: int) -> np.ndarray:
    """cv2.imread that fails loudly instead of returning None."""
    image = cv2.imread(str(path), flags)
    if image is None:
        sys.exit(f"cannot read {path}")
    return np.asarray(image)


def masked_psnr(prediction: np.ndarray, target: np.ndarray, visible: np.ndarray) -> float:
    """PSNR (dB) over the masked pixels only; visible pixels are copied by every demasker."""
    diff = prediction[~visible].astype(np.float64) - target[~visible].astype(np.float64)
    return float(10 * np.log10(255.0**2 / max(float(np.mean(diff**2)), 1e-10)))


def psnr_table(
    demaskers: dict[str, Demasker], frames: list[np.ndarray], extra_frames: int
) -> dict[str, dict]:
    """Mean masked PSNR per family and demasker, over every (frame, mask) pair.

    The default families use all ``frames``; the other families (TELEA is slow on them) use
    ``extra_frames`` of them, evenly spread (0 = skip them).
    """
    table: dict[str, dict] = {}
    spread = np.linspace(0, len(frames) - 1, min(extra_frames, len(frames))).round().astype(int)
    defaults = mask_families(extra=False)
    for family, masks in mask_families(extra=extra_frames > 0).items():
        subset = frames if family in defaults else [frames[i] for i in spread]
        scores: dict[str, list[float]] = {name: [] for name in demaskers}
        for frame in subset:
            images = np.where(masks.visible[..., None], frame[None], 0).astype(np.uint8)
            for name, demasker in demaskers.items():
                out = demasker.demask(images, masks.visible)
                scores[name] += [masked_psnr(o, frame, v) for o, v in zip(out, masks.visible, strict=True)]
        table[family] = {name: statistics.fmean(s) for name, s in scores.items()}
        table[family] |= {"k": masks.k, "frames": len(subset)}
        cells = "  ".join(f"{name} {statistics.fmean(s):6.2f} dB" for name, s in scores.items())
        print(f"{family:34s} K={masks.k:2d} frames={len(subset):3d}  {cells}", flush=True)
    return table


def latency_ms(demasker: Demasker, frame: np.ndarray, batch: int, repeats: int) -> tuple[float, float]:
    """(median, best) milliseconds per image for batches of ``batch`` masked 480x360 images.

    The best run is the figure for an idle CPU; the median shows the cost under the current load.
    """
    visible = recovery_masks(HEIGHT, WIDTH, 0.005, "column").visible
    visible = np.resize(visible, (batch, HEIGHT, WIDTH))
    images = np.where(visible[..., None], frame[None], 0).astype(np.uint8)
    demasker.demask(images, visible)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        demasker.demask(images, visible)
        times.append((time.perf_counter() - start) / batch)
    return 1000 * statistics.median(times), 1000 * min(times)


def certified_quality(demaskers: dict[str, Demasker], frames: int, threads: int) -> dict[str, dict]:
    """%C, cmR, mIoU (recovery column 0.5 %, detection column 1 %) with the default segmenter."""
    from demasked_ros.core.metrics import CertificationMetrics
    from demasked_ros.engines.certifier import Certifier
    from demasked_ros.engines.defaults import default_segmenter

    segmenter = default_segmenter(threads=threads)
    names, images = load_val(frames)
    labels = [read(CAMVID / "valannot" / n, cv2.IMREAD_UNCHANGED) for n in names]
    results: dict[str, dict] = {}
    for family, masks in list(mask_families(False).items()):
        for name, demasker in demaskers.items():
            metrics = CertificationMetrics(len(segmenter.class_names), ignore_index=11)
            certifier = Certifier(segmenter, demasker, masks)
            for image, label in zip(images, labels, strict=True):
                result = certifier.certify(image)
                metrics.add(result.labels, result.certified, label)
            summary = metrics.summary()
            results[f"{family} / {name}"] = summary
            print(f"{family:34s} {name:8s} %C {summary['pct_certified']:5.1f}  cmR {summary['cmR']:5.1f}  "
                  f"mIoU {summary['mIoU']:5.1f}  FAR {summary.get('FAR', float('nan')):5.1f}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the figures (optionally also as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_DEMASKER_PATH)
    parser.add_argument("--frames", type=int, default=20, help="val frames for PSNR (0 = all 101)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--extra-frames", type=int, default=5,
                        help="frames for the non-default mask families (0 = default families only)")
    parser.add_argument("--certify", type=int, default=0, help="also %%C on this many val frames")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    demaskers: dict[str, Demasker] = {
        "learned": LearnedDemasker(args.model, threads=args.threads),
        "telea": TeleaDemasker(),
    }
    _, frames = load_val(args.frames)
    print(f"model {args.model} ({args.model.stat().st_size / 1e6:.2f} MB), {len(frames)} val frames, "
          f"{args.threads} threads")
    report: dict[str, object] = {"frames": len(frames), "threads": args.threads}
    report["latency_ms_per_image"] = {
        f"{name} batch {batch}": latency_ms(demasker, frames[0], batch, args.repeats)
        for name, demasker in demaskers.items() for batch in (1, 5)
    }
    for key, (median, best) in report["latency_ms_per_image"].items():  # type: ignore[attr-defined]
        print(f"latency {key:18s} median {median:7.1f} ms, best {best:7.1f} ms per 480x360 image")
    report["psnr_masked_db"] = psnr_table(demaskers, frames, args.extra_frames)
    if args.certify:
        report["certification"] = certified_quality(demaskers, args.certify, args.threads)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
