"""The node's frame path with and without pipelining, without ROS: certified frames/s and latency.

A synthetic camera submits raw frames (bytes, as a ``sensor_msgs/Image`` carries them) at
``--rate`` Hz to the node's worker (:func:`~demasked_ros.apps.node.pipeline.make_frame_worker`);
prepare = decode (bytes -> array) + ``FrameCertifier.prepare`` (resize, staging), process =
``FrameCertifier.certify``. Prints, per mode, certified frames/s, dropped frames and latency
(submit -> certified) p50/p95.

    python benchmarks/bench_node_pipeline.py --device cpu --seconds 8
    python benchmarks/bench_node_pipeline.py --device cuda --camera 1080x1920 --working 270
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from demasked_ros.apps.node.models import load_models
from demasked_ros.apps.node.params import config_from_values
from demasked_ros.apps.node.pipeline import make_frame_worker
from demasked_ros.apps.node.resolution import CameraFrame, FrameCertifier, build_frame_certifier
from demasked_ros.datasets.procedural import street_scene


def run(pipelined: bool, certifier: FrameCertifier, frames: list[bytes], shape: tuple[int, int, int],
        rate: float, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def prepare(item: tuple[float, bytes]) -> CameraFrame:
        image = np.frombuffer(item[1], np.uint8).reshape(shape).copy()  # the node's decode_raw copies too
        return certifier.prepare(image)

    def process(item: tuple[float, bytes], prepared: CameraFrame) -> None:
        certifier.certify(prepared)
        with lock:
            latencies.append(time.monotonic() - item[0])

    worker = make_frame_worker(pipelined, prepare, process, lambda item, error: print("error:", error))
    worker.start()
    certifier.certify(np.frombuffer(frames[0], np.uint8).reshape(shape).copy())  # warm up
    start, sent = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        worker.submit((time.monotonic(), frames[sent % len(frames)]))
        sent += 1
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
    worker.stop(timeout=60)
    elapsed = time.monotonic() - start
    done = np.array(latencies) * 1000.0
    return {"fps": len(done) / elapsed, "sent": sent, "certified": len(done),
            "p50": float(np.percentile(done, 50)) if len(done) else float("nan"),
            "p95": float(np.percentile(done, 95)) if len(done) else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--camera", default="360x480", help="HxW of the camera frames")
    parser.add_argument("--working", type=int, default=0, help="working_height (0: native)")
    parser.add_argument("--rate", type=float, default=30.0, help="camera Hz")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    height, width = (int(v) for v in args.camera.split("x"))
    config = config_from_values({"executor": "cuda" if args.device == "cuda" else "cpu", "threads": 2,
                                 "working_height": args.working})
    models = load_models(config)
    certifier = build_frame_certifier(config, models, height, width)
    frames = [street_scene(seed, height, width)[0].tobytes() for seed in range(4)]
    print(f"camera {height}x{width}, {certifier.plan.describe()}, executor {models.executor_name}, "
          f"{args.rate:g} Hz for {args.seconds:g} s")
    print(f"{'pipeline':>8} {'fps':>7} {'certified':>9} {'sent':>5} {'p50 ms':>8} {'p95 ms':>8}")
    for pipelined in (False, True):
        r = run(pipelined, certifier, frames, (height, width, 3), args.rate, args.seconds)
        print(f"{'on' if pipelined else 'off':>8} {r['fps']:7.2f} {r['certified']:9d} {r['sent']:5d} "
              f"{r['p50']:8.1f} {r['p95']:8.1f}")


if __name__ == "__main__":
    main()
