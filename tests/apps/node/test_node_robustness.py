"""The node under bad input and overload: rejects every malformed class, keeps only the newest frame."""

from __future__ import annotations

import time

import numpy as np
import pytest

from demasked_ros.core.masks import detection_masks
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.demaskers import SolidFillDemasker
from tests.apps.node.harness import Probe, decode_output, image_msg, start_node
from tests.apps.node.plugins import wide_segmenter

pytestmark = pytest.mark.ros

SMALL = (120, 160)


def scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((*SMALL, 3), np.uint8)
    image[:40] = (40, 60, 200)
    image[40:] = (90, 90, 90)
    image[60:, 40:90] = (200, 30, 30)
    return image + rng.integers(0, 30, image.shape, dtype=np.uint8)


def malformed_messages() -> dict[str, object]:
    good = scene(0)
    cases = {}
    msg = image_msg(good, "rgb8", (0, 0))
    msg.encoding = "yuv422"
    cases["unknown encoding"] = msg
    msg = image_msg(good, "rgb8", (0, 0))
    msg.height, msg.width, msg.step, msg.data = 0, 0, 0, b""
    cases["zero size"] = msg
    msg = image_msg(good, "rgb8", (0, 0))
    msg.step = 160 * 3 - 1
    cases["step too small"] = msg
    msg = image_msg(good, "rgb8", (0, 0))
    msg.data = bytes(len(msg.data) - 1)
    cases["data too short"] = msg
    cases["too many pixels"] = image_msg(np.zeros((121, 160, 3), np.uint8), "rgb8", (0, 0))
    return cases


def test_malformed_messages_are_rejected_and_the_node_lives_on(ros_python, ros_env, rclpy_context):
    params = {"segmenter_plugin": "tests.apps.node.plugins:wide_segmenter", "demasker": "solid",
              "mode": "detection", "patch_height": 10, "patch_width": 10,
              "max_image_pixels": SMALL[0] * SMALL[1], "diagnostics_period": 0.2,
              "input_qos": "reliable", "input_qos_depth": 10}
    process = start_node(ros_python, ros_env, params)
    probe = Probe(rclpy_context, reliable=True)
    try:
        probe.wait_ready(process)
        for index, (name, msg) in enumerate(malformed_messages().items()):
            msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + index, 7
            probe.publisher.publish(msg)
            assert probe.spin_until(lambda i=index: probe.by_stamp("alert", 100 + i, 7), 10.0), name
            status = probe.by_stamp("alert", 100 + index, 7)[0]
            assert status.error_code == 1, name  # ERROR_INVALID_INPUT
            assert status.alert and status.certified_fraction == 0.0
            assert status.error_text.startswith("invalid input"), name
            assert probe.by_stamp("labels", 100 + index, 7) == []
            assert process.poll() is None, f"node died on {name}"
        probe.publisher.publish(image_msg(scene(1), "rgb8", (200, 0)))
        assert probe.spin_until(lambda: probe.by_stamp("labels", 200, 0) and probe.by_stamp("alert", 200, 0),
                                10.0)
        assert probe.by_stamp("alert", 200, 0)[0].error_code == 0
        # 300 classes: labels (detection: f(x)) go out as mono16, values intact.
        labels = probe.by_stamp("labels", 200, 0)[0]
        assert labels.encoding == "mono16" and labels.step == SMALL[1] * 2
        expected = Certifier(wide_segmenter(), SolidFillDemasker(),
                             detection_masks(*SMALL, (10, 10), "column")).certify(scene(1))
        assert expected.labels.max() > 255
        np.testing.assert_array_equal(decode_output(labels), expected.labels)
        count = str(len(malformed_messages()))
        assert probe.spin_until(lambda: probe.diagnostics().get("rejected_frames") == count, 5.0)
    finally:
        probe.destroy()


def test_keep_latest_under_a_30hz_stream_faster_than_processing(ros_python, ros_env, rclpy_context):
    params = {"segmenter_plugin": "tests.apps.node.plugins:slow_segmenter", "demasker": "solid",
              "patch_height": 10, "patch_width": 10, "diagnostics_period": 0.2,
              "input_qos": "reliable", "input_qos_depth": 100}
    process = start_node(ros_python, ros_env, params)
    probe = Probe(rclpy_context, reliable=True)
    try:
        probe.wait_ready(process)
        frames = [scene(seed) for seed in range(4)]
        sent = 60
        start = time.monotonic()
        for index in range(sent):
            probe.publisher.publish(image_msg(frames[index % 4], "rgb8", (300, index)))
            probe.spin_until(lambda i=index: time.monotonic() >= start + (i + 1) / 30.0, 1.0)
        last = (300, sent - 1)
        assert probe.spin_until(lambda: probe.by_stamp("alert", *last), 10.0), "newest frame not processed"
        probe.spin_for(0.5)
        alerts = [m for m in probe.messages("alert") if m.header.stamp.sec == 300]
        stamps = [m.header.stamp.nanosec for m in alerts]
        assert stamps == sorted(set(stamps)), "outputs out of order or duplicated"
        # How many frames get processed and how old outputs are depend on the machine's load: those
        # figures are printed by `benchmarks/bench_node.py --segmenter slow --seconds 2`, not asserted.
        assert probe.spin_until(lambda: probe.diagnostics().get("frames_received") == str(sent), 5.0)
        diagnostics = probe.diagnostics()
        dropped, certified = int(diagnostics["dropped_frames"]), int(diagnostics["frames_certified"])
        assert certified == len(alerts)
        assert dropped > 0 and dropped + certified == sent
        assert process.poll() is None
    finally:
        probe.destroy()


def test_a_frame_over_the_timeout_fails_closed_and_its_late_result_is_dropped(ros_python, ros_env,
                                                                               rclpy_context):
    params = {"segmenter_plugin": "tests.apps.node.plugins:slow_segmenter", "demasker": "solid",
              "patch_height": 10, "patch_width": 10, "frame_timeout": 0.03, "diagnostics_period": 0.2}
    process = start_node(ros_python, ros_env, params)
    probe = Probe(rclpy_context, reliable=True)
    try:
        probe.wait_ready(process)
        probe.publisher.publish(image_msg(scene(2), "rgb8", (400, 0)))
        assert probe.spin_until(lambda: probe.by_stamp("alert", 400, 0), 10.0)
        status = probe.by_stamp("alert", 400, 0)[0]
        assert status.error_code == 2 and "frame_timeout" in status.error_text  # ERROR_TIMEOUT
        assert status.alert and status.certified_fraction == 0.0
        probe.spin_for(0.6)  # the certifier finishes meanwhile; its result must not be published
        assert len(probe.by_stamp("alert", 400, 0)) == 1
        assert probe.by_stamp("labels", 400, 0) == []
        assert probe.spin_until(lambda: probe.diagnostics().get("timeouts") == "1", 5.0)
    finally:
        probe.destroy()
