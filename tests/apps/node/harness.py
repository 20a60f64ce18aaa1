"""Test-side helpers: start the node in its own process and talk to it over ROS topics."""

from __future__ import annotations

import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[3]
NODE = "/demasked_ros"
OUTPUTS = ("labels", "certification", "overlay", "alert", "class_info")


def node_args(params: dict[str, Any], *flags: str) -> list[str]:
    """argv for ``python -m demasked_ros.apps.node.main`` with ``-p name:=value`` per parameter."""
    args = ["-m", "demasked_ros.apps.node.main", *flags, "--ros-args"]
    for name, value in params.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = value
        else:
            text = repr(value)
        args += ["-p", f"{name}:={text}"]
    return args


def start_node(ros_python: Callable[..., subprocess.Popen[str]], ros_env: dict[str, str],
               params: dict[str, Any], *flags: str) -> subprocess.Popen[str]:
    """The node as a child process (repo root on PYTHONPATH so test plugins import)."""
    path = os.pathsep.join(p for p in (str(REPO), ros_env.get("PYTHONPATH", "")) if p)
    return ros_python(*node_args(params, *flags), cwd=str(REPO), extra_env={"PYTHONPATH": path})


class Probe:
    """A test node that publishes frames to ``/image`` and records every node output."""

    def __init__(self, context: Any, compressed: bool = False, reliable: bool = False) -> None:
        import rclpy
        from demasked_ros_interfaces.msg import CertificationStatus, ClassInfo
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image

        self.node = rclpy.create_node("probe", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[Any]] = defaultdict(list)
        kinds = {"labels": Image, "certification": Image, "overlay": Image, "alert": CertificationStatus}
        for name, kind in kinds.items():
            self.node.create_subscription(kind, f"{NODE}/{name}", self._recorder(name), 50)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(ClassInfo, f"{NODE}/class_info", self._recorder("class_info"), latched)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("diagnostics"), 10)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE) if reliable \
            else qos_profile_sensor_data
        if compressed:
            self.publisher = self.node.create_publisher(CompressedImage, "/image/compressed", qos)
        else:
            self.publisher = self.node.create_publisher(Image, "/image", qos)

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            self.received[name].append((time.monotonic(), msg))
        return record

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Spin until ``predicate()`` holds; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return predicate()

    def spin_for(self, seconds: float) -> None:
        """Spin (collecting messages) for ``seconds``."""
        self.spin_until(lambda: False, seconds)

    def wait_ready(self, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
        """Wait until the node subscribes to the input and has published its class info."""
        ready = self.spin_until(lambda: process.poll() is not None or (
            self.publisher.get_subscription_count() > 0 and bool(self.received["class_info"])), timeout)
        if not ready or process.poll() is not None:
            _, err = process.communicate(timeout=5) if process.poll() is not None else ("", "")
            raise AssertionError(f"node not ready (exit {process.poll()}): {err[-2000:]}")

    def messages(self, name: str) -> list[Any]:
        """Messages received on an output so far."""
        return [msg for _, msg in self.received[name]]

    def by_stamp(self, name: str, sec: int, nanosec: int) -> list[Any]:
        """Messages on an output whose header carries this stamp."""
        return [m for m in self.messages(name)
                if (m.header.stamp.sec, m.header.stamp.nanosec) == (sec, nanosec)]

    def diagnostics(self) -> dict[str, str]:
        """Key/values of the newest diagnostics message from the node."""
        for msg in reversed(self.messages("diagnostics")):
            for status in msg.status:
                if status.hardware_id == "demasked_ros":
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def destroy(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def image_msg(rgb: np.ndarray, encoding: str, stamp: tuple[int, int], frame_id: str = "camera",
              pad: int = 0) -> Any:
    """A sensor_msgs/Image of ``rgb`` in ``encoding`` (rgb8, bgr8, rgba8, bgra8, mono8), rows padded."""
    from sensor_msgs.msg import Image

    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[:, :, ::-1]
    elif encoding == "rgba8":
        pixels = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    elif encoding == "bgra8":
        pixels = np.concatenate([rgb[:, :, ::-1], np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    elif encoding == "mono8":
        pixels = rgb[:, :, :1]
    else:
        raise ValueError(encoding)
    rows = np.ascontiguousarray(pixels).reshape(rgb.shape[0], -1)
    rows = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1)
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=0,
                step=rows.shape[1])
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id = frame_id
    msg.data = rows.tobytes()
    return msg


def decode_output(msg: Any) -> np.ndarray:
    """Pixels of an output image (labels/certification as H x W, overlay as H x W x 3)."""
    from demasked_ros.rosio.image_codec import decode_labels, decode_raw

    if msg.encoding == "rgb8":
        return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data)
    return decode_labels(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))
