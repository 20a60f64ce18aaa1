"""``demasked-demo``: the node on a short driving clip, every output recorded to a rosbag2 (mcap).

What it does, in one process on a private, host-local ROS domain:

1. starts :class:`DemaskedNode` with the default models (the packaged CamVid segmenter and the
   learned demasker; TELEA when the demasker weights are missing, and a crude colour-rule
   segmenter with a loud message when even the segmenter is missing);
2. feeds it the CamVid 15 Hz clip (``val/0016E5_07959.png`` ..) when ``../shared/data/camvid``
   exists (``$DEMASKED_CAMVID`` overrides), else frames of the procedural street generator;
3. records the input and every output topic (labels, certification, overlay, alert, class_info,
   /diagnostics) to an mcap bag that RViz (rosbag2) or Foxglove can open;
4. prints one line per frame (stamp, certified fraction, alert, latency) and where the bag is.

Frames are fed one at a time (the next once the previous result is out), so every frame appears
in the bag; ``--realtime`` streams at the clip rate instead and lets the node drop frames.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demasked_ros.engines.segmenters import CallableSegmenter

OUTPUT_TOPICS = ("labels", "certification", "overlay", "alert", "class_info")


def fallback_segmenter() -> CallableSegmenter:
    """A crude colour-rule CamVid segmenter (sky / road / building / tree) for machines without the model.

    Only for showing the pipeline when ``demasked_ros/models/segmenter.onnx`` is missing; its
    labels mean little, its certificates are still sound (any deterministic segmenter is).
    """
    from demasked_ros.core.classes import CAMVID

    def rule(images: np.ndarray) -> np.ndarray:
        rgb = images.astype(np.int16)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        labels = np.full(images.shape[:3], 1, np.int32)  # building
        labels[(b > r + 20) & (b > 120)] = 0  # sky
        labels[(g > r + 10) & (g > b)] = 5  # tree
        labels[(abs(r - g) < 15) & (abs(g - b) < 15) & (r < 110)] = 3  # road (dark grey)
        return labels

    return CallableSegmenter(rule, CAMVID.names)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="demasked-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20, help="frames to feed (default 20)")
    parser.add_argument("--mode", choices=("recovery", "detection"), default="recovery")
    parser.add_argument("--scheme", default="column", help="mask scheme (default column)")
    parser.add_argument("--patch-fraction", type=float, default=0.005,
                        help="patch size as a fraction of the image area (default 0.005)")
    parser.add_argument("--demasker", default="default", help="default, learned, telea, ns or solid")
    parser.add_argument("--source", choices=("auto", "camvid", "procedural"), default="auto")
    parser.add_argument("--output", type=Path, default=None,
                        help="bag directory (default runs/demo/<date-time>)")
    parser.add_argument("--realtime", action="store_true",
                        help="stream at the clip rate; the node keeps the newest frame and drops others")
    parser.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be >= 1")
    return args


def _frames(source: str, count: int) -> tuple[str, Iterator[np.ndarray]]:
    """(description, RGB frames) of the CamVid clip or the procedural drive."""
    from demasked_ros.datasets.camvid import camvid_clip, find_camvid_root

    root = find_camvid_root() if source in ("auto", "camvid") else None
    if root is not None:
        clip = camvid_clip(root, with_labels=False)
        frames = (frame.image for index, frame in enumerate(clip) if index < count)
        return f"CamVid 15 Hz clip in {root} ({min(count, len(clip))} frames)", frames
    if source == "camvid":
        raise SystemExit("demasked-demo: error: CamVid not found "
                         "(set DEMASKED_CAMVID or use --source procedural)")
    from demasked_ros.datasets.procedural import ProceduralSource

    drive = ProceduralSource(count, seed=0)
    why = "; CamVid not found" if source == "auto" else ""
    return f"procedural street scenes ({count} frames{why})", (f.image for f in drive)


def _prepare_environment() -> None:
    """Host-local ROS on a private domain, before rclpy is imported (the network rule)."""
    from demasked_ros.rosio.ros_env import ensure_interfaces_importable, ros_subprocess_env

    domain = int(os.environ.get("ROS_DOMAIN_ID") or 100 + os.getpid() % 100)
    home = os.environ.get("ROS_HOME")
    os.environ.update(ros_subprocess_env(domain, ros_home=home))
    ensure_interfaces_importable()


def _node_parameters(args: argparse.Namespace) -> tuple[list[Any], str]:
    from rclpy.parameter import Parameter

    from demasked_ros.engines.defaults import DEFAULT_SEGMENTER_PATH

    params = [Parameter("mode", value=args.mode), Parameter("scheme", value=args.scheme),
              Parameter("patch_fraction", value=float(args.patch_fraction)),
              Parameter("demasker", value=args.demasker), Parameter("threads", value=int(args.threads)),
              Parameter("input_qos", value="reliable"), Parameter("input_qos_depth", value=5)]
    if DEFAULT_SEGMENTER_PATH.is_file():
        return params, f"default segmenter {DEFAULT_SEGMENTER_PATH.name}"
    print(f"demasked-demo: NOTE: the default segmenter {DEFAULT_SEGMENTER_PATH} is missing; using a crude "
          "colour-rule stand-in (labels are rough; certificates are still sound)", file=sys.stderr)
    params.append(Parameter("segmenter_plugin", value=f"{__name__}:fallback_segmenter"))
    return params, "colour-rule stand-in segmenter"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 on success, 2 on a setup error."""
    args = _parse(argv)
    _prepare_environment()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from demasked_ros.apps.node.demo_recorder import RawRecorder, topic_types
    from demasked_ros.apps.node.node import DemaskedNode
    from demasked_ros.rosio.image_codec import encode_rgb8

    description, frames = _frames(args.source, args.frames)
    output = args.output or Path("runs") / "demo" / time.strftime("%Y%m%d-%H%M%S")
    params, segmenter_text = _node_parameters(args)
    rclpy.init(args=[])
    node = DemaskedNode(parameter_overrides=params)
    feeder = rclpy.create_node("demasked_demo")
    executor = SingleThreadedExecutor()
    try:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            print(f"demasked-demo: error: {node.configure_error}", file=sys.stderr)
            return 2
        node.trigger_activate()
        print(f"demasked-demo: {segmenter_text}; {node.get_parameter('mode').value} "
              f"{node.get_parameter('scheme').value}; input: {description}")
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        publisher = feeder.create_publisher(Image, "image", reliable)
        with RawRecorder(output) as recorder:
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            for topic, kind in topic_types().items():
                qos = latched if topic.endswith("class_info") else QoSProfile(depth=50)
                feeder.create_subscription(kind, topic, recorder.callback(topic), qos, raw=True)
            alerts: dict[tuple[int, int], Any] = {}
            from demasked_ros_interfaces.msg import CertificationStatus

            feeder.create_subscription(
                CertificationStatus, "/demasked_ros/alert",
                lambda m: alerts.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), m), reliable)
            executor.add_node(node)
            executor.add_node(feeder)
            _spin_until(executor, lambda: publisher.get_subscription_count() > 0, 10.0)
            print(f"{'frame':>5} {'stamp':>20} {'certified':>9} {'alert':>5} {'regions':>7} {'latency':>9}")
            for index, rgb in enumerate(frames):
                encoding, step, data = encode_rgb8(rgb)
                msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=step)
                msg.header.stamp = node.get_clock().now().to_msg()
                msg.header.frame_id = "camera"
                msg.data = data
                key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                publisher.publish(msg)
                if args.realtime:
                    _spin_until(executor, lambda: False, 1.0 / 15.0)
                    continue
                if not _spin_until(executor, lambda k=key: k in alerts, 60.0):
                    print(f"{index:5d}  no result within 60 s", file=sys.stderr)
                    continue
                _print_line(index, alerts[key])
            if args.realtime:  # keep-latest: the newest frame is always processed in the end
                _spin_until(executor, lambda k=key: k in alerts, 60.0)
            _spin_until(executor, lambda: False, 1.5)  # last outputs and a diagnostics message
            if args.realtime:
                for index, key in enumerate(sorted(alerts)):
                    _print_line(index, alerts[key])
        counts = ", ".join(f"{topic} {count}" for topic, count in sorted(recorder.counts.items()))
        print(f"demasked-demo: bag written to {output.resolve()} ({counts})")
        print("demasked-demo: open it in Foxglove, or `ros2 bag play` it and watch it in RViz")
        return 0
    finally:
        executor.shutdown()
        if node.state_name == "active":
            node.trigger_shutdown()
        node.destroy_node()
        feeder.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def _spin_until(executor: Any, predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.02)
    return bool(predicate())


def _print_line(index: int, status: Any) -> None:
    stamp = f"{status.header.stamp.sec}.{status.header.stamp.nanosec:09d}"
    error = f"  ERROR {status.error_code}: {status.error_text}" if status.error_code else ""
    alert = "yes" if status.alert else "no"
    print(f"{index:5d} {stamp:>20} {status.certified_fraction * 100:8.1f}% {alert:>5} "
          f"{len(status.alert_regions):7d} {status.latency_ms:7.0f}ms{error}")


if __name__ == "__main__":
    sys.exit(main())
