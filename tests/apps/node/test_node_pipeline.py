"""The node with frame pipelining on: outputs equal to the library, in stamp order, fail closed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from demasked_ros.core.masks import recovery_masks
from demasked_ros.core.visualize import certification_image
from demasked_ros.datasets.procedural import street_scene
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.demaskers import TeleaDemasker
from tests.apps.node.harness import Probe, decode_output, image_msg, start_node
from tests.apps.node.plugins import POISON, colour_segmenter

pytestmark = pytest.mark.ros

SIZE = (120, 160)
# The colour rule plus 100 ms per batch, so frames arrive while one is certified; it raises on a
# POISON frame (with the plain slow_segmenter a poison frame that was not dropped certified fine).
PARAMS = {"segmenter_plugin": "tests.apps.node.plugins:slow_poison_segmenter", "demasker": "telea",
          "mode": "recovery", "scheme": "column", "patch_fraction": 0.01, "threads": 1,
          "diagnostics_period": 0.2, "input_qos": "reliable", "input_qos_depth": 100,
          "frame_timeout": 60.0, "max_image_pixels": SIZE[0] * SIZE[1]}


def stamps(probe: Probe, topic: str, sec: int) -> list[int]:
    """Nanosecond stamps of ``topic`` messages with this second, in the order they arrived."""
    return [m.header.stamp.nanosec for m in probe.messages(topic) if m.header.stamp.sec == sec]


def test_pipelined_outputs_match_the_library_in_stamp_order(ros_python, ros_env, rclpy_context):
    process = start_node(ros_python, ros_env, PARAMS)
    probe = Probe(rclpy_context, reliable=True)
    try:
        probe.wait_ready(process)
        certifier = Certifier(colour_segmenter(), TeleaDemasker(), recovery_masks(*SIZE, 0.01, "column"))
        frames = [street_scene(seed=seed, height=SIZE[0], width=SIZE[1])[0] for seed in range(4)]
        expected = [certifier.certify(rgb) for rgb in frames]
        assert all(0.0 < e.certified_fraction < 1.0 for e in expected)  # a meaningful comparison

        # A frame that fails to prepare while the previous one is certified: its alert comes after
        # that frame's result, and nothing certified goes out for it. (Keep-latest may drop the
        # first frame when the second arrives before it is taken: then try again.)
        for attempt in range(5):
            first, second = 2 * attempt, 2 * attempt + 1
            probe.publisher.publish(image_msg(frames[0], "rgb8", (1, first)))
            probe.spin_for(0.02)
            broken = image_msg(frames[1], "rgb8", (1, second))
            broken.encoding = "yuv422"
            probe.publisher.publish(broken)
            assert probe.spin_until(lambda s=second: probe.by_stamp("alert", 1, s), 60.0)
            assert probe.spin_until(lambda n=str(second + 1): probe.diagnostics().get("frames_received") == n
                                    and probe.diagnostics().get("in_flight") == "False", 60.0)
            probe.spin_for(0.3)
            order = stamps(probe, "alert", 1)
            assert order == sorted(set(order)), f"alerts out of order: {order}"
            bad = probe.by_stamp("alert", 1, second)[0]
            assert bad.error_code == 1 and bad.error_text.startswith("invalid input")
            assert bad.certified_fraction == 0.0 and probe.by_stamp("labels", 1, second) == []
            if probe.by_stamp("alert", 1, first):
                assert probe.by_stamp("alert", 1, first)[0].error_code == 0
                assert probe.spin_until(lambda f=first: probe.by_stamp("labels", 1, f), 10.0)
                np.testing.assert_array_equal(decode_output(probe.by_stamp("labels", 1, first)[0]),
                                              expected[0].labels)
                break
        else:
            pytest.fail("the first frame was dropped in every attempt")
        checked = 2 * attempt + 2

        # A stream faster than certification, with a frame that crashes the model in it.
        sent, poison_at = 24, 9
        poison = np.zeros((*SIZE, 3), np.uint8)
        poison[:] = POISON
        start = time.monotonic()
        for index in range(sent):
            rgb = poison if index == poison_at else frames[index % 4]
            probe.publisher.publish(image_msg(rgb, "rgb8", (2, index), frame_id=f"cam{index}"))
            if index == poison_at:  # keep-latest drops only replaced frames: let the crash through
                assert probe.spin_until(lambda: probe.by_stamp("alert", 2, poison_at), 30.0)
            probe.spin_until(lambda i=index: time.monotonic() >= start + (i + 1) / 30.0, 1.0)
        last = sent - 1
        assert probe.spin_until(lambda: probe.by_stamp("alert", 2, last) and probe.by_stamp(
            "certification", 2, last) and probe.by_stamp("labels", 2, last), 120.0), "newest frame lost"
        probe.spin_for(0.5)

        alerts = stamps(probe, "alert", 2)
        assert alerts == sorted(set(alerts)), f"alerts out of order or duplicated: {alerts}"
        assert poison_at in alerts
        for topic in ("labels", "certification"):
            order = stamps(probe, topic, 2)
            assert order == sorted(set(order)), f"{topic} out of order or duplicated: {order}"
        assert stamps(probe, "labels", 2) == [i for i in alerts if i != poison_at]
        for index in alerts:
            status = probe.by_stamp("alert", 2, index)[0]
            assert status.header.frame_id == f"cam{index}"
            if index == poison_at:
                assert status.error_code == 3 and status.certified_fraction == 0.0
                continue
            want = expected[index % 4]
            assert status.error_code == 0
            assert status.certified_fraction == pytest.approx(want.certified_fraction, abs=1e-6)
            labels = probe.by_stamp("labels", 2, index)
            certification = probe.by_stamp("certification", 2, index)
            assert len(labels) == len(certification) == 1, "labels only with their certificate"
            np.testing.assert_array_equal(decode_output(labels[0]), want.labels)
            np.testing.assert_array_equal(decode_output(certification[0]),
                                          certification_image(want.certified))
        assert len(alerts) < sent, "the stream should outrun the certifier"

        total = str(sent + checked)
        assert probe.spin_until(lambda: probe.diagnostics().get("frames_received") == total, 10.0)
        diagnostics = probe.diagnostics()
        assert diagnostics["pipeline"] == "on"
        certified, dropped = int(diagnostics["frames_certified"]), int(diagnostics["dropped_frames"])
        failed, rejected = int(diagnostics["failed_frames"]), int(diagnostics["rejected_frames"])
        assert certified == len(stamps(probe, "labels", 2)) + len(stamps(probe, "labels", 1))
        assert rejected == checked // 2 and failed == int(poison_at in alerts)
        assert certified + dropped + failed + rejected == sent + checked, diagnostics
        assert process.poll() is None
    finally:
        probe.destroy()
