"""Issue 11, the node in its own process: remapped compressed input, mask cache, cancellation on
timeout, memory returned after a 4K frame, class_info identity and the batch probe in diagnostics."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.apps.node.harness import REPO, Probe, image_msg, node_args, start_node
from tests.apps.node.plugins import CALLS_ENV, SLOW_MARK

pytestmark = pytest.mark.ros


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 3] = (40, 60, 200)
    image[height // 3:] = (90, 90, 90)
    image[height // 2:, width // 4: width // 2] = (200, 30, 30)
    return image + rng.integers(0, 30, image.shape, dtype=np.uint8)


def compressed_msg(rgb: np.ndarray, stamp: tuple[int, int]):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format="jpeg")
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.data = cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes()
    return msg


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def test_remapped_compressed_input_cache_identity_and_probe(ros_python, ros_env, rclpy_context):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage

    params = {"segmenter_plugin": "tests.apps.node.plugins:colour_segmenter", "demasker": "solid",
              "input_transport": "compressed", "input_qos": "reliable", "input_qos_depth": 10,
              "patch_height": 8, "patch_width": 8, "diagnostics_period": 0.2}
    path = os.pathsep.join(p for p in (str(REPO), ros_env.get("PYTHONPATH", "")) if p)
    process = ros_python(*node_args(params), "-r", "image:=/cam/image", cwd=str(REPO),
                         extra_env={"PYTHONPATH": path})
    probe = Probe(rclpy_context)
    publisher = probe.node.create_publisher(CompressedImage, "/cam/image/compressed",
                                            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    try:
        assert probe.spin_until(lambda: publisher.get_subscription_count() > 0 and
                                bool(probe.received["class_info"]), 60.0), "not subscribed to the remap"
        assert probe.publisher.get_subscription_count() == 0  # /image/compressed is not used
        sizes = [(60, 80), (48, 64)] * 3
        for index, size in enumerate(sizes):
            publisher.publish(compressed_msg(scene(*size), (10, index)))
            assert probe.spin_until(lambda i=index: probe.by_stamp("alert", 10, i), 20.0), index
            assert probe.by_stamp("alert", 10, index)[0].error_code == 0
        assert probe.spin_until(lambda: probe.diagnostics().get("masks_built") == "2", 5.0), \
            probe.diagnostics().get("masks_built")
        diagnostics = probe.diagnostics()
        assert diagnostics["batch_probe"] == "passed"
        assert diagnostics["alarm"].startswith("uncalibrated")  # no calibration for a plugin model
        assert probe.messages("class_info")[0].model == "tests.apps.node.plugins:colour_segmenter"
    finally:
        probe.destroy()
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert err.count("masks built") <= 2  # once per size at most, throttled


def test_a_timed_out_frame_is_cancelled_between_chunks(ros_python, ros_env, rclpy_context, tmp_path):
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    params = {"segmenter_plugin": "tests.apps.node.plugins:marked_slow_segmenter", "demasker": "solid",
              "scheme": "4-mask", "chunk_size": 1, "frame_timeout": 1.0, "patch_height": 6,
              "patch_width": 6, "input_qos": "reliable", "input_qos_depth": 10}
    path = os.pathsep.join(p for p in (str(REPO), ros_env.get("PYTHONPATH", "")) if p)
    process = ros_python(*node_args(params), cwd=str(REPO), extra_env={"PYTHONPATH": path,
                                                                       CALLS_ENV: str(calls)})
    probe = Probe(rclpy_context, reliable=True)
    try:
        probe.wait_ready(process)
        slow = np.full((48, 64, 3), SLOW_MARK, np.uint8)
        probe.publisher.publish(image_msg(slow, "rgb8", (20, 0)))  # K = 9 chunks of 0.6 s each
        assert probe.spin_until(lambda: probe.by_stamp("alert", 20, 0), 10.0)
        assert probe.by_stamp("alert", 20, 0)[0].error_code == 2  # ERROR_TIMEOUT
        probe.publisher.publish(image_msg(scene(48, 64, 1), "rgb8", (20, 1)))
        assert probe.spin_until(lambda: probe.by_stamp("alert", 20, 1), 10.0)
        assert probe.by_stamp("alert", 20, 1)[0].error_code == 0
        assert probe.by_stamp("labels", 20, 0) == []  # nothing certified for the timed-out frame
    finally:
        probe.destroy()
    chunks = len(calls.read_text().split())
    assert 1 <= chunks <= 3, f"the timed-out frame ran {chunks} of 9 chunks"


@pytest.mark.slow
def test_memory_comes_back_after_a_4k_frame(ros_python, ros_env, rclpy_context):
    params = {"demasker": "default", "threads": 2, "frame_timeout": 120.0, "publish_overlay": True}
    process = start_node(ros_python, ros_env, params)
    probe = Probe(rclpy_context)
    try:
        probe.wait_ready(process, timeout=120.0)
        info = probe.messages("class_info")[0].model
        assert info.startswith("segmenter.onnx sha256:") and "/" not in info
        normal = scene(360, 480)
        for index in range(4):
            probe.publisher.publish(image_msg(normal, "rgb8", (30, index)))
            assert probe.spin_until(lambda i=index: probe.by_stamp("alert", 30, i), 120.0)
        steady = rss_mb(process.pid)
        probe.publisher.publish(image_msg(scene(2160, 3840), "rgb8", (31, 0)))
        assert probe.spin_until(lambda: probe.by_stamp("alert", 31, 0), 180.0)
        assert probe.by_stamp("alert", 31, 0)[0].error_code == 0
        for index in range(6):  # the output queues (depth 5) let go of the 4K messages
            probe.publisher.publish(image_msg(normal, "rgb8", (32, index)))
            assert probe.spin_until(lambda i=index: probe.by_stamp("alert", 32, i), 120.0)
        after = rss_mb(process.pid)
        assert after - steady < 200.0, (steady, after)
    finally:
        probe.destroy()
