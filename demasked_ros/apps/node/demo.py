"""``demasked-demo``: the node on a short driving clip, every output recorded to a rosbag2 (mcap).

What it does, in one process on a private, host-local ROS domain:

1. starts :class:`DemaskedNode` with the default models (the packaged CamVid segmenter and the
   learned demasker; TELEA when the demasker weights are missing, and a crude colour-rule
   segmenter with a loud message when even the segmenter is missing);
2. feeds it the CamVid 15 Hz clip (``val/0016E5_07959.png`` ..) when CamVid is found
   (``$DEMASKED_CAMVID``, else ``../shared/data/camvid``, else ``~/.local/share/demasked_ros/camvid``
   where ``demasked-fetch-data camvid`` puts it), else frames of the procedural street generator;
3. records the input and every output topic (labels, certification, overlay, alert, class_info,
   /diagnostics) to an mcap bag that RViz (rosbag2) or Foxglove can open;
4. prints one line per frame (stamp, certified fraction, alert, latency), writes a PNG contact sheet
   next to the bag (input | overlay | certification map of a few frames) and ends with a summary:
   which input and why, the mean certified fraction, where the bag is, how to look at it and how to
   run on real frames.

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

from demasked_ros.apps.node.demo_summary import DemoInput, summary_lines
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
    parser.add_argument("--sheet", type=Path, default=None,
                        help="contact sheet PNG (default next to the bag: <bag>_contact_sheet.png)")
    parser.add_argument("--sheet-rows", type=int, default=4, help="frames on the contact sheet (0: none)")
    parser.add_argument("--sheet-width", type=int, default=320, help="thumbnail width (default 320)")
    parser.add_argument("--sheet-bits", type=int, default=8,
                        help="bits per colour channel of the sheet, 1-8 (5 makes a small PNG; default 8)")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be >= 1")
    if args.sheet_width < 32 or not 1 <= args.sheet_bits <= 8:
        parser.error("--sheet-width must be >= 32 and --sheet-bits in 1..8")
    return args


def _frames(source: str, count: int) -> tuple[DemoInput, Iterator[np.ndarray]]:
    """The input (what, and why it was chosen) and its RGB frames: the CamVid clip or the procedural drive."""
    from demasked_ros.datasets.camvid import camvid_clip, locate_camvid

    found = locate_camvid() if source in ("auto", "camvid") else None
    if found is not None and found.root is not None:
        clip = camvid_clip(found.root, with_labels=False)
        frames = (frame.image for index, frame in enumerate(clip) if index < count)
        why = f"CamVid found {found.reason}" + (" (--source camvid)" if source == "camvid" else "")
        what = f"CamVid 15 Hz clip, {min(count, len(clip))} of {len(clip)} frames, from {found.root}"
        return DemoInput(what, why, camvid=True), frames
    if source == "camvid":
        raise SystemExit(f"demasked-demo: error: CamVid not found ({found.reason if found else ''}); "
                         "run `demasked-fetch-data camvid`, set DEMASKED_CAMVID, or use --source procedural")
    from demasked_ros.datasets.procedural import ProceduralSource

    drive = ProceduralSource(count, seed=0)
    why = f"CamVid not found ({found.reason})" if found is not None else "chosen with --source procedural"
    return DemoInput(f"procedural street scenes, {count} frames", why, camvid=False), (f.image for f in drive)


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

    source, frames = _frames(args.source, args.frames)
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
              f"{node.get_parameter('scheme').value}; input: {source.what}")
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
        sheet = _contact_sheet(args, output, source)
        fractions = [a.certified_fraction for a in alerts.values() if a.error_code == 0]
        setting = (f"{node.get_parameter('mode').value}, {node.get_parameter('scheme').value} masks, "
                   f"patch {args.patch_fraction * 100:g} % of the image")
        print("\n".join(summary_lines(source, fractions, setting, output.resolve(), counts, sheet)))
        return 0
    finally:
        executor.shutdown()
        if node.state_name == "active":
            node.trigger_shutdown()
        node.destroy_node()
        feeder.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def _contact_sheet(args: argparse.Namespace, bag: Path, source: DemoInput) -> Path | None:
    """Write the contact sheet of the recorded bag; None (with a note) when off or impossible."""
    if args.sheet_rows < 1:
        return None
    from demasked_ros.apps.contact_sheet import rows_from_bag, sheet_path, write_contact_sheet

    rows = rows_from_bag(bag, args.sheet_rows)
    if not rows:
        print("demasked-demo: no certified frame to put on a contact sheet", file=sys.stderr)
        return None
    title = (f"demasked_ros demo: {source.what.split(',')[0]}; {args.mode}, {args.scheme} masks, "
             f"patch {args.patch_fraction * 100:g} % of the image")
    return write_contact_sheet((args.sheet or sheet_path(bag)).resolve(), rows, title, args.sheet_width,
                               args.sheet_bits)


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
