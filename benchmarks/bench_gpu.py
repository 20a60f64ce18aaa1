"""GPU path benchmark: CudaStreamExecutor with the default models' torch twins, end to end.

For recovery (columns, 0.5 % patch, K=5) and detection (column bands, 1 % patch, K=11), at
480x360, 1280x720 and 1920x1080, S streams in {1, 2, K}, batched (one chunk per stream) and one
branch at a time (chunk_size=1), it prints per-frame latency p50 / p95 (``Certifier.certify``,
frames one after another), throughput (frames/s, sequential; and with 2 frames in flight for the
default S=2 batched setting), per-stage times (a separate run that synchronises after each stage,
S=1), and the ratio of K-branch latency to one-branch latency (one masked copy through the same
executor). Targets (H100/H200 class, issue 8): recovery 480x360 >= 200 frames/s and p50 <= 10 ms,
detection >= 100 frames/s, recovery 1920x1080 >= 30 frames/s, K-branch latency <= 2x one branch.

Usage::

    python benchmarks/bench_gpu.py [--device cuda|cpu] [--quick] [--sizes 480x360,1920x1080]
        [--repeats N] [--demasker default|telea] [--json PATH]

``--quick``: fewer repeats; on ``--device cpu`` only 480x360 (a CPU frame takes seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demasked_ros.core.masks import MaskSet, detection_masks, recovery_masks
from demasked_ros.engines.certifier import Certifier, StageClock
from demasked_ros.engines.cuda_executor import CudaStreamExecutor
from demasked_ros.engines.protocols import Demasker, Segmenter

SIZES = {"480x360": (360, 480), "1280x720": (720, 1280), "1920x1080": (1080, 1920)}
STAGES = ("masking", "demasking", "segmentation", "aggregation")


@dataclass
class Row:
    """One measured configuration."""

    mode: str
    size: str
    k: int
    streams: int
    batching: str
    p50_ms: float
    p95_ms: float
    fps: float
    one_branch_ms: float = float("nan")
    ratio: float = float("nan")
    stages_ms: dict[str, float] = field(default_factory=dict)
    fps_2_in_flight: float = float("nan")


def make_frame(height: int, width: int) -> np.ndarray:
    """A procedural street scene at the requested size (no data needed)."""
    from demasked_ros.datasets.procedural import street_scene

    return street_scene(0, height, width)[0]


def mask_set(mode: str, height: int, width: int) -> MaskSet:
    """The issue's settings: recovery columns 0.5 % (K=5) or detection columns 1 % (K=11)."""
    if mode == "recovery":
        return recovery_masks(height, width, 0.005, "column")
    return detection_masks(height, width, 0.01, "column", k=11)


def sync(device: str) -> None:
    """Wait for the device (no-op on the CPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def latencies(fn: Callable[[], object], repeats: int, warmup: int, device: str) -> list[float]:
    """Seconds per call of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - start)
    return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile in ms."""
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def two_in_flight(segmenter: Segmenter, demasker: Demasker, masks: MaskSet, image: np.ndarray, device: str,
                  frames: int) -> float:
    """Frames/s with two worker threads, each with its own executor (frame pipelining)."""
    certifiers = [Certifier(segmenter, demasker, masks, executor=CudaStreamExecutor(device, streams=2))
                  for _ in range(2)]
    for certifier in certifiers:
        certifier.certify(image)
    count = max(2, frames)

    def work(certifier: Certifier, n: int) -> None:
        for _ in range(n):
            certifier.certify(image)

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(c, count // 2)) for c in certifiers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (count // 2) * 2 / (time.perf_counter() - start)


def bench_size(mode: str, size: str, segmenter: Segmenter, demasker: Demasker, device: str, repeats: int,
               warmup: int) -> list[Row]:
    """All stream / batching settings for one mode and size."""
    height, width = SIZES[size]
    image = make_frame(height, width)
    masks = mask_set(mode, height, width)
    rows = []
    one_mask = MaskSet(masks.visible[:1], t=masks.t, mode=masks.mode, patch=masks.patch, scheme=masks.scheme)
    single = CudaStreamExecutor(device, streams=1)
    one = latencies(lambda: single.run(image, one_mask, demasker, segmenter, StageClock()),
                    repeats, warmup, device)
    one_p50 = percentile(one, 50)
    for streams in sorted({1, 2, masks.k}):
        for batching, chunk in (("batched", None), ("one-by-one", 1)):
            executor = CudaStreamExecutor(device, streams=streams, chunk_size=chunk)
            certifier = Certifier(segmenter, demasker, masks, executor=executor)
            times = latencies(partial(certifier.certify, image), repeats, warmup, device)
            p50 = percentile(times, 50)
            rows.append(Row(mode, size, masks.k, streams, batching, p50, percentile(times, 95),
                            1.0 / statistics.mean(times), one_p50, p50 / one_p50))
    profiler = Certifier(segmenter, demasker, masks,
                         executor=CudaStreamExecutor(device, streams=1, sync_stages=True))
    stage_runs = [profiler.certify(image).timings for _ in range(max(2, repeats // 2))]
    stages = {s: statistics.median(t[s] for t in stage_runs) * 1000.0 for s in STAGES}
    for row in rows:
        row.stages_ms = stages
    default = next(r for r in rows if r.streams == min(2, masks.k) and r.batching == "batched")
    default.fps_2_in_flight = two_in_flight(segmenter, demasker, masks, image, device, repeats)
    return rows


def print_table(rows: list[Row]) -> None:
    """One line per configuration, then the stage split per (mode, size)."""
    print(f"{'mode':<9} {'size':<9} {'K':>2} {'S':>2} {'batching':<10} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'fps':>7} {'1-br ms':>8} {'K/1':>5} {'fps x2':>7}")
    for r in rows:
        x2 = "" if np.isnan(r.fps_2_in_flight) else f"{r.fps_2_in_flight:7.1f}"
        print(f"{r.mode:<9} {r.size:<9} {r.k:>2} {r.streams:>2} {r.batching:<10} {r.p50_ms:8.2f} "
              f"{r.p95_ms:8.2f} {r.fps:7.1f} {r.one_branch_ms:8.2f} {r.ratio:5.2f} {x2:>7}")
    print("\nper-stage ms (S=1, synchronised after each stage):")
    seen = set()
    for r in rows:
        if (r.mode, r.size) not in seen:
            seen.add((r.mode, r.size))
            print(f"  {r.mode:<9} {r.size:<9} " + "  ".join(f"{s} {r.stages_ms[s]:.2f}" for s in STAGES))


def targets(rows: list[Row]) -> list[tuple[str, float, str, bool]]:
    """(target, measured, requirement, met) for the issue's targets (best setting per target)."""
    def best(mode: str, size: str) -> list[Row]:
        return [r for r in rows if r.mode == mode and r.size == size]

    out = []
    for mode, size, need in (("recovery", "480x360", 200.0), ("detection", "480x360", 100.0),
                             ("recovery", "1920x1080", 30.0)):
        found = best(mode, size)
        if found:
            fps = max(max(r.fps, 0 if np.isnan(r.fps_2_in_flight) else r.fps_2_in_flight) for r in found)
            out.append((f"{mode} {size} throughput", fps, f">= {need:.0f} fps", fps >= need))
    found = best("recovery", "480x360")
    if found:
        p50 = min(r.p50_ms for r in found)
        out.append(("recovery 480x360 p50 latency", p50, "<= 10 ms", p50 <= 10.0))
        ratio = min(r.ratio for r in found)
        out.append(("K-branch / one-branch latency", ratio, "<= 2.0", ratio <= 2.0))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default=None, help="comma-separated, e.g. 480x360,1920x1080")
    parser.add_argument("--modes", default="recovery,detection")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--demasker", default="default", choices=("default", "telea"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    from demasked_ros.engines import defaults
    from demasked_ros.engines.demaskers import TeleaDemasker

    on_cpu = args.device == "cpu"
    sizes = args.sizes.split(",") if args.sizes else (["480x360"] if on_cpu and args.quick else list(SIZES))
    repeats = args.repeats or (3 if on_cpu else 10 if args.quick else 50)
    warmup = 1 if on_cpu else 3
    segmenter = defaults.default_segmenter(backend="torch", device=args.device, threads=args.threads)
    demasker: Demasker = (TeleaDemasker() if args.demasker == "telea"
                else defaults.default_demasker(backend="torch", device=args.device, threads=args.threads))
    import torch

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {args.device} ({name}), torch {torch.__version__}, demasker {type(demasker).__name__}, "
          f"repeats {repeats}, warm-up {warmup}")
    rows: list[Row] = []
    for mode in args.modes.split(","):
        for size in sizes:
            rows += bench_size(mode, size, segmenter, demasker, args.device, repeats, warmup)
    print_table(rows)
    print("\ntargets (issue 8, H100/H200 class):")
    for label, value, need, met in targets(rows):
        print(f"  {label:<32} {value:9.2f}  {need:<12} {'MET' if met else 'not met'}")
    if args.json:
        report = {"device": args.device, "name": name, "rows": [asdict(r) for r in rows],
                  "targets": targets(rows)}
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
