"""Frames of 480x360 up to 3840x2160 through the node: peak and retained RSS, latency and %C.

For each resolution a fresh node (default parameters: automatic working resolution, memory
budget) gets warm-up frames at 480x360 (its steady RSS), then ``--frames`` frames at the
resolution (latency from the input stamp to the alert here, certified fraction, error code, peak
RSS = VmHWM), then 480x360 frames again (retained RSS: RSS afterwards minus the steady RSS).
Targets: peak RSS under the steady RSS (models loaded) plus the memory budget; retained within
200 MB of the steady state.

Runs on loopback on a private ROS domain (LOCALHOST discovery); every wait is bounded.

Usage::

    .venv/bin/python benchmarks/bench_resolutions.py [--frames 2] [-p name:=value ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.node_harness import ERROR_NAMES, NodeUnderTest, scene

RESOLUTIONS = ((360, 480), (720, 1280), (1080, 1920), (2160, 3840))
#: The node's default memory budget in MB (parameter memory_budget, GB).
DEFAULT_BUDGET_MB = 1500.0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2, help="frames per resolution (default 2)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for one answer")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra node parameter (repeatable)")
    parser.add_argument("--sizes", default="", help="e.g. 360x480,2160x3840 (default: all four)")
    return parser.parse_args()


def main() -> int:
    args = parse()
    params = {"threads": "2", "frame_timeout": "120.0"}
    for item in args.param:
        name, _, value = item.partition(":=")
        params[name] = value
    budget_mb = float(params.get("memory_budget", DEFAULT_BUDGET_MB / 1000.0)) * 1000.0
    sizes = RESOLUTIONS if not args.sizes else tuple(
        tuple(int(v) for v in item.split("x")) for item in args.sizes.split(","))
    small = scene(360, 480)
    rows = []
    for height, width in sizes:
        node = NodeUnderTest(params)
        try:
            if not node.wait_ready():
                print(f"bench_resolutions: the node did not start for {width}x{height}", file=sys.stderr)
                return 1
            for _ in range(3):
                node.request(partial(node.frame, small), args.timeout)
            steady = node.memory_mb()[0]
            frame = scene(height, width, seed=1)
            latencies, fractions, codes = [], [], []
            for _ in range(args.frames):
                answer = node.request(partial(node.frame, frame), args.timeout)
                if answer is None:
                    codes.append("no_answer")
                    continue
                latencies.append(answer[0] * 1000.0)
                fractions.append(answer[1].certified_fraction * 100.0)
                codes.append(ERROR_NAMES.get(int(answer[1].error_code), str(answer[1].error_code)))
            peak = node.memory_mb()[1]
            for _ in range(5):
                node.request(partial(node.frame, small), args.timeout)
            time.sleep(0.5)
            retained = node.memory_mb()[0]
            crashed = node.crashed
        finally:
            node.close()
        rows.append((f"{width}x{height}", steady, peak, retained - steady,
                     float(np.median(latencies)) if latencies else float("nan"),
                     float(np.mean(fractions)) if fractions else float("nan"), ",".join(codes), crashed))
    print(f"bench_resolutions: {args.frames} frame(s) per resolution, node parameters {params}")
    print(f"  {'frame':>10s} {'steady MB':>10s} {'peak MB':>9s} {'retained MB':>12s} {'latency ms':>11s} "
          f"{'%C':>6s}  codes / crashed")
    for name, steady, peak, kept, latency, fraction, answers, crashed in rows:
        flag = "" if peak <= steady + budget_mb else "  (peak over steady + budget)"
        print(f"  {name:>10s} {steady:10.0f} {peak:9.0f} {kept:+12.0f} {latency:11.0f} {fraction:6.1f}  "
              f"{answers} / {crashed}{flag}")
    print(f"  targets: peak <= steady + budget ({budget_mb:.0f} MB); retained within 200 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
