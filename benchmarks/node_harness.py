"""Shared by the reliability benchmarks: a node in a child process and a loopback client for it.

Network rule: the node and this process run on a private ROS domain with
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (``ros_subprocess_env``); nothing leaves the host. Every
wait is bounded. The node's memory is read from ``/proc/<pid>/status`` (VmRSS now, VmHWM peak).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demasked_ros.rosio.ros_env import (
    ensure_interfaces_importable,
    ros_subprocess_env,
    start_ros_python,
)

#: The node's entry module (run with ``python -m``).
NODE_MODULE = "demasked_ros.apps.node.main"
#: Names of CertificationStatus.error_code values, for reports.
ERROR_NAMES = {0: "NONE", 1: "INVALID_INPUT", 2: "TIMEOUT", 3: "BRANCH_FAILED", 4: "MODEL", 5: "INTERNAL"}


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB; (nan, nan) once it is gone."""
    values = {"VmRSS": float("nan"), "VmHWM": float("nan")}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return values["VmRSS"], values["VmHWM"]


def pct(values: list[float], q: float) -> float:
    """Percentile, nan for an empty list."""
    return float(np.percentile(values, q)) if values else float("nan")


class NodeUnderTest:
    """The node as a child process plus a client node publishing frames and recording alerts.

    Args:
        params: ROS parameters for the node (``-p name:=value``).
        compressed: publish ``sensor_msgs/CompressedImage`` on ``/image/compressed``.
        domain: ROS domain id for both processes (host-local); default ``$ROS_DOMAIN_ID``.
        reliable: publish with reliable QoS (the node's ``input_qos`` must be ``reliable``),
            else best-effort sensor-data QoS like a camera driver.
    """

    def __init__(self, params: dict[str, str], compressed: bool = False, domain: int | None = None,
                 quiet: bool = True, reliable: bool = False) -> None:
        if domain is None:  # the caller's own domain id (ROS_DOMAIN_ID), else one from the pid
            domain = int(os.environ.get("ROS_DOMAIN_ID") or 150 + os.getpid() % 50)
        self.domain = domain
        env = ros_subprocess_env(self.domain)
        os.environ.update(env)  # this process joins the same private, host-local domain
        ensure_interfaces_importable()
        command = ["-m", NODE_MODULE, "--ros-args"]
        for name, value in params.items():
            command += ["-p", f"{name}:={value}"]
        sink = subprocess.DEVNULL if quiet else None
        self.process = start_ros_python(command, env, stdout=sink, stderr=sink)
        import rclpy
        from demasked_ros_interfaces.msg import CertificationStatus
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image

        self._rclpy = rclpy
        rclpy.init(args=[])
        self.client = rclpy.create_node("bench_client")
        self.alerts: dict[int, tuple[float, Any]] = {}
        self.codes: Counter[int] = Counter()
        self.client.create_subscription(CertificationStatus, "/demasked_ros/alert", self._on_alert,
                                        QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        kind, topic = (CompressedImage, "image/compressed") if compressed else (Image, "image")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE) if reliable \
            else qos_profile_sensor_data
        self.publisher = self.client.create_publisher(kind, topic, qos)
        self._image, self._compressed = Image, CompressedImage

    def _on_alert(self, msg: Any) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.alerts[stamp] = (time.time(), msg)
        self.codes[int(msg.error_code)] += 1

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Spin the client until ``predicate()`` holds or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate():
            self._rclpy.spin_once(self.client, timeout_sec=0.002)
        return bool(predicate())

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """True once the node subscribes to the input (False if it died or took too long)."""
        self.spin_until(lambda: self.publisher.get_subscription_count() > 0 or self.crashed, timeout)
        return not self.crashed and self.publisher.get_subscription_count() > 0

    @property
    def crashed(self) -> bool:
        """True when the node process has exited."""
        return self.process.poll() is not None

    def memory_mb(self) -> tuple[float, float]:
        """The node's (RSS, peak RSS) in MB."""
        return memory_mb(self.process.pid)

    def raw(self, height: int, width: int, encoding: str, step: int, data: bytes) -> int:
        """Publish a raw Image stamped now; returns the stamp (ns) that identifies its alert."""
        msg = self._image(height=height, width=width, encoding=encoding, step=step)
        return self._send(msg, data)

    def compressed(self, fmt: str, data: bytes) -> int:
        """Publish a CompressedImage stamped now; returns the stamp (ns)."""
        return self._send(self._compressed(format=fmt), data)

    def frame(self, image: np.ndarray) -> int:
        """Publish an RGB uint8 frame as rgb8."""
        height, width = image.shape[:2]
        return self.raw(height, width, "rgb8", width * 3, np.ascontiguousarray(image).tobytes())

    def _send(self, msg: Any, data: bytes) -> int:
        stamp = time.time_ns()
        msg.header.frame_id = "bench"
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        msg.data = data
        self.publisher.publish(msg)
        return stamp

    def request(self, send: Callable[[], int], timeout: float) -> tuple[float, Any] | None:
        """Send one message and wait for its alert: (latency s, CertificationStatus) or None."""
        stamp = send()
        self.spin_until(lambda: stamp in self.alerts or self.crashed, timeout)
        if stamp not in self.alerts:
            return None
        arrived, msg = self.alerts[stamp]
        return arrived - stamp / 1e9, msg

    def close(self) -> int | None:
        """Stop the node (SIGINT, then kill) and this client; returns the node's exit code."""
        if not self.crashed:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.client.destroy_node()
        self._rclpy.shutdown()
        return self.process.returncode


def code_summary(codes: Counter[int]) -> str:
    """``NONE=12 INVALID_INPUT=9870 ...``"""
    return " ".join(f"{ERROR_NAMES.get(code, str(code))}={count}" for code, count in sorted(codes.items()))


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A procedural street-like frame at any size (sky, road, blocks), deterministic."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[: height // 3] = (110, 150, 220)
    image[height // 3:] = (90, 90, 95)
    for _ in range(6):
        y, x = int(rng.integers(height // 4, height - height // 6)), int(rng.integers(0, width - width // 8))
        image[y - height // 8:y, x:x + width // 8] = rng.integers(30, 230, size=3)
    noise = rng.integers(0, 12, size=image.shape, dtype=np.uint8)
    return image + noise
