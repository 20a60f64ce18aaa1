"""Soak test: stream frames into the node at 30 Hz for N minutes; report memory, rate, latency, errors.

Prints the node's RSS at the start (after warm-up), after 1 minute and at the end (target: growth
under 50 MB), its peak (VmHWM), the processed rate (certified frames per second; the keep-latest
worker drops the rest), end-to-end latency p50/p95 (input stamp to the alert arriving here) and
the alerts by error code. Whether the node crashed is printed last.

Runs on loopback on a private ROS domain (LOCALHOST discovery), bounded by ``--minutes``.

Usage::

    .venv/bin/python benchmarks/bench_soak.py [--minutes 10] [--rate 30] [--segmenter default|colour]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.node_harness import NodeUnderTest, code_summary, pct, scene


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="streaming time (default 10)")
    parser.add_argument("--rate", type=float, default=30.0, help="input rate in Hz (default 30)")
    parser.add_argument("--segmenter", choices=("default", "colour"), default="default")
    parser.add_argument("--demasker", default="default")
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def main() -> int:
    args = parse()
    params = {"demasker": args.demasker, "threads": str(args.threads), "diagnostics_period": "1.0"}
    if args.segmenter == "colour":
        params["segmenter_plugin"] = "demasked_ros.apps.node.demo:fallback_segmenter"
    frames = [scene(args.height, args.width, seed) for seed in range(8)]
    node = NodeUnderTest(params)
    sent: list[int] = []
    try:
        if not node.wait_ready():
            print("bench_soak: the node did not start", file=sys.stderr)
            return 1
        for _ in range(3):  # warm-up (model initialisation, masks)
            node.request(lambda: node.frame(frames[0]), 120.0)
        node.alerts.clear()
        node.codes.clear()
        rss_start = node.memory_mb()[0]
        rss_minute = float("nan")
        start = time.monotonic()
        total = int(args.minutes * 60 * args.rate)
        for index in range(total):
            if node.crashed:
                break
            due = start + index / args.rate
            node.spin_until(lambda: time.monotonic() >= due, 1.0)  # noqa: B023 - called at once
            sent.append(node.frame(frames[index % len(frames)]))
            if rss_minute != rss_minute and time.monotonic() - start >= 60.0:  # nan until set
                rss_minute = node.memory_mb()[0]
        elapsed = time.monotonic() - start
        node.spin_until(lambda: bool(sent) and sent[-1] in node.alerts, 30.0)
        rss_end, peak = node.memory_mb()
        crashed = node.crashed
    finally:
        code = node.close()
    answered = [s for s in sent if s in node.alerts]
    certified = [s for s in answered if node.alerts[s][1].error_code == 0]
    latency = [(node.alerts[s][0] - s / 1e9) * 1000.0 for s in certified]
    print(f"bench_soak: {args.width}x{args.height} at {args.rate:g} Hz for {elapsed / 60:.1f} min, "
          f"segmenter={args.segmenter} demasker={args.demasker} threads={args.threads}")
    print(f"  frames sent {len(sent)}, answered {len(answered)}, certified {len(certified)} "
          f"({len(certified) / max(elapsed, 1e-9):.2f} Hz processed)")
    print(f"  alerts by error code: {code_summary(node.codes)}")
    print(f"  end-to-end latency ms: p50 {pct(latency, 50):.1f}  p95 {pct(latency, 95):.1f}")
    print(f"  node RSS MB: start {rss_start:.0f}  1 min {rss_minute:.0f}  end {rss_end:.0f}  "
          f"growth {rss_end - rss_start:+.0f} (target < 50)  peak (VmHWM) {peak:.0f}")
    print(f"  crashed: {crashed} (exit code {code})")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
