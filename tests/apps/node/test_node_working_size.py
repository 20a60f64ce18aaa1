"""The node certifying at a working resolution: camera-size outputs equal to the library path."""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.core import visualize
from demasked_ros.core.classes import palette
from demasked_ros.core.masks import recovery_masks
from demasked_ros.core.threat import patch_shape
from demasked_ros.core.visualize import certification_image
from demasked_ros.datasets.procedural import street_scene
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.demaskers import TeleaDemasker
from demasked_ros.engines.resizing import FrameResizer
from tests.apps.node.harness import Probe, decode_output, image_msg, start_node
from tests.apps.node.plugins import colour_segmenter

pytestmark = pytest.mark.ros

PARAMS = {"segmenter_plugin": "tests.apps.node.plugins:colour_segmenter", "demasker": "telea",
          "mode": "recovery", "scheme": "column", "patch_fraction": 0.01, "threads": 1,
          "working_height": 48, "min_alert_region_area": 10, "diagnostics_period": 0.2}


def library_path(rgb: np.ndarray, working_hw: tuple[int, int]):
    """resize -> Certifier with masks for the widened original patch -> upscale (the reference)."""
    camera_hw = rgb.shape[:2]
    resizer = FrameResizer(camera_hw, working_hw, "area")
    original = patch_shape(camera_hw[0], camera_hw[1], 0.01)
    masks = recovery_masks(*working_hw, resizer.patch(original), "column")
    result = Certifier(colour_segmenter(), TeleaDemasker(), masks).certify(resizer.resize(rgb))
    labels = resizer.upscale_labels(result.labels)
    certified = resizer.upscale_labels(result.certified.astype(np.uint8)) == 1
    return labels, certified, original, masks


def test_working_resolution_outputs_keep_the_camera_size_and_header(ros_python, ros_env, rclpy_context):
    process = start_node(ros_python, ros_env, PARAMS)
    probe = Probe(rclpy_context)
    try:
        probe.wait_ready(process)
        # 96x128 -> 48x64 (working_height only: aspect kept); then 72x128 -> 48x85 rebuilds the masks.
        for stamp, (height, width), working, seed in (((10, 5), (96, 128), (48, 64), 5),
                                                      ((11, 7), (72, 128), (48, 85), 6)):
            rgb, _ = street_scene(seed=seed, height=height, width=width)
            labels, certified, original, masks = library_path(rgb, working)
            assert 0.0 < certified.mean() < 1.0, "a meaningful comparison needs both kinds of pixels"
            assert masks.patch != original, "the widened patch differs from the reported one"
            probe.publisher.publish(image_msg(rgb, "rgb8", stamp, frame_id=f"cam_{height}"))
            assert probe.spin_until(lambda s=stamp: all(probe.by_stamp(t, *s) for t in
                                                        ("alert", "labels", "certification", "overlay")),
                                    20.0), (height, width)
            status = probe.by_stamp("alert", *stamp)[0]
            assert status.error_code == 0 and status.header.frame_id == f"cam_{height}"
            assert (status.patch_height, status.patch_width) == original  # the threat model, camera px
            assert (status.k, status.t) == (masks.k, masks.t)
            assert status.certified_fraction == pytest.approx(certified.mean(), abs=1e-6)
            assert status.alert and status.alert_regions
            for box in status.alert_regions:  # regions are in camera pixels
                assert box.x_offset + box.width <= width and box.y_offset + box.height <= height
            messages = {t: probe.by_stamp(t, *stamp)[0] for t in ("labels", "certification", "overlay")}
            for msg in messages.values():
                assert (msg.height, msg.width) == (height, width)
                assert msg.header.frame_id == f"cam_{height}"
                assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == stamp
            np.testing.assert_array_equal(decode_output(messages["labels"]), labels)
            np.testing.assert_array_equal(decode_output(messages["certification"]),
                                          certification_image(certified))
            np.testing.assert_array_equal(decode_output(messages["overlay"]), visualize.overlay(
                rgb, labels, certified, palette(4), alpha=0.5))
            widened = f"{masks.patch[0]}x{masks.patch[1]}"
            assert probe.spin_until(lambda w=widened: probe.diagnostics().get("working_patch") == w, 5.0)
            diagnostics = probe.diagnostics()
            assert diagnostics["working_size"] == f"{working[0]}x{working[1]}"
            assert diagnostics["camera_size"] == f"{height}x{width}"
            assert diagnostics["patch"] == f"{original[0]}x{original[1]}"
        assert process.poll() is None
    finally:
        probe.destroy()
