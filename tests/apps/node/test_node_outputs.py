"""The node in its own process: encodings, headers, and outputs bit-identical to the library."""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.core import visualize
from demasked_ros.core.classes import palette
from demasked_ros.core.masks import recovery_masks
from demasked_ros.core.visualize import certification_image
from demasked_ros.datasets.procedural import street_scene
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.demaskers import TeleaDemasker
from tests.apps.node.harness import Probe, decode_output, image_msg, start_node
from tests.apps.node.plugins import POISON, colour_segmenter

pytestmark = pytest.mark.ros

PARAMS = {"segmenter_plugin": "tests.apps.node.plugins:poison_segmenter", "demasker": "telea",
          "mode": "recovery", "scheme": "column", "patch_fraction": 0.01, "threads": 1,
          "min_alert_region_area": 50, "diagnostics_period": 0.2, "max_image_pixels": 480 * 360}


def test_outputs_headers_and_encodings_match_the_library(ros_python, ros_env, rclpy_context):
    process = start_node(ros_python, ros_env, PARAMS)
    probe = Probe(rclpy_context)
    try:
        probe.wait_ready(process)
        info = probe.messages("class_info")[0]
        assert list(info.class_names) == ["dark", "red", "green", "blue"]
        assert len(info.colors) == 4 and info.model.endswith("poison_segmenter")

        rgb, _ = street_scene(seed=5)
        certifier = Certifier(colour_segmenter(), TeleaDemasker(), recovery_masks(360, 480, 0.01, "column"))
        expected = certifier.certify(rgb)
        assert 0.0 < expected.certified_fraction < 1.0  # a meaningful comparison
        gray = np.repeat(rgb[:, :, :1], 3, axis=2)
        expected_gray = certifier.certify(gray)
        cases = [("rgb8", 0), ("bgr8", 4), ("rgba8", 0), ("bgra8", 8), ("mono8", 3)]
        for index, (encoding, pad) in enumerate(cases):
            stamp = (1000 + index, 123456789)
            probe.publisher.publish(image_msg(rgb, encoding, stamp, frame_id=f"cam_{encoding}", pad=pad))
            assert probe.spin_until(lambda s=stamp: probe.by_stamp("alert", *s), 20.0), encoding
            want = expected_gray if encoding == "mono8" else expected
            status = probe.by_stamp("alert", *stamp)[0]
            assert status.header.frame_id == f"cam_{encoding}"
            assert status.error_code == 0 and status.error_text == ""
            assert status.certified_fraction == pytest.approx(want.certified_fraction, abs=1e-6)
            assert status.alert == (want.certified_fraction < 1.0)
            assert (status.k, status.t, status.patch_height, status.patch_width) == (5, 2, 42, 42)
            assert probe.spin_until(lambda s=stamp: all(probe.by_stamp(t, *s) for t in
                                                        ("labels", "certification", "overlay")), 5.0)
            labels = probe.by_stamp("labels", *stamp)[0]
            certification = probe.by_stamp("certification", *stamp)[0]
            overlay = probe.by_stamp("overlay", *stamp)[0]
            assert (labels.encoding, certification.encoding, overlay.encoding) == ("mono8", "mono8", "rgb8")
            for msg in (labels, certification, overlay):
                assert msg.header.frame_id == f"cam_{encoding}"
                assert (msg.height, msg.width) == (360, 480)
            np.testing.assert_array_equal(decode_output(labels), want.labels)
            np.testing.assert_array_equal(decode_output(certification), certification_image(want.certified))
            source = gray if encoding == "mono8" else rgb
            np.testing.assert_array_equal(decode_output(overlay), visualize.overlay(
                source, want.labels, want.certified, palette(4), alpha=0.5))
            assert status.patch_score >= 0.0  # the patch alarm's fields are published
            assert status.persistent_score >= 0.0
            assert (status.suspected_patch.height, status.suspected_patch.width) in (
                (0, 0), (status.patch_height, status.patch_width))
            if want.certified_fraction < 1.0:
                assert status.alert_regions, "uncertified areas should give alert regions"
                box = status.alert_regions[0]
                region = ~want.certified[box.y_offset:box.y_offset + box.height,
                                         box.x_offset:box.x_offset + box.width]
                assert region.sum() >= 50

        # Fail closed: a segmenter crash gives an alert with nothing certified and the error text...
        poison = np.zeros((360, 480, 3), np.uint8)
        poison[:] = POISON
        probe.publisher.publish(image_msg(poison, "rgb8", (2000, 1)))
        assert probe.spin_until(lambda: probe.by_stamp("alert", 2000, 1), 20.0)
        failed = probe.by_stamp("alert", 2000, 1)[0]
        assert failed.alert and failed.certified_fraction == 0.0 and failed.alerted_fraction == 1.0
        assert failed.error_code == 3 and "poisoned frame" in failed.error_text
        assert failed.patch_score == 0.0 and failed.suspected_patch.width == 0
        assert failed.persistent_score == 0.0
        probe.spin_for(0.3)
        assert probe.by_stamp("labels", 2000, 1) == []  # no labels for a failed frame
        zero_map = probe.by_stamp("certification", 2000, 1)
        assert zero_map and not decode_output(zero_map[0]).any()
        # ... and the next good frame certifies again.
        probe.publisher.publish(image_msg(rgb, "rgb8", (2001, 0)))
        assert probe.spin_until(lambda: probe.by_stamp("alert", 2001, 0), 20.0)
        recovered = probe.by_stamp("alert", 2001, 0)[0]
        assert recovered.error_code == 0
        assert recovered.certified_fraction == pytest.approx(expected.certified_fraction, abs=1e-6)

        certified = str(len(cases) + 1)
        assert probe.spin_until(lambda: probe.diagnostics().get("frames_certified") == certified, 5.0)
        diagnostics = probe.diagnostics()
        assert diagnostics["failed_frames"] == "1" and diagnostics["rejected_frames"] == "0"
        assert "poisoned frame" in diagnostics["last_error"]
        assert diagnostics["providers"] == "python" and "poison_segmenter" in diagnostics["model"]
        assert process.poll() is None
    finally:
        probe.destroy()
