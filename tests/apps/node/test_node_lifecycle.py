"""Detection mode over compressed input, lifecycle transitions, and parameter errors at configure."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from demasked_ros.core.masks import detection_masks
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.demaskers import TeleaDemasker
from demasked_ros.engines.segmenters import OnnxSegmenter
from tests.apps.node.harness import NODE, REPO, Probe, decode_output, image_msg, start_node
from tests.tiny_models import CLASS_NAMES, write_conv_model

pytestmark = pytest.mark.ros


def png_msg(rgb: np.ndarray, stamp: tuple[int, int]):
    from sensor_msgs.msg import CompressedImage

    ok, data = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    msg = CompressedImage(format="png")
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id = "front"
    msg.data = data.tobytes()
    return msg


def _model_that_sees_the_patch(tmp_path, background, patch):
    """A tiny ONNX conv net whose labels differ between background and patch colours."""
    for seed in range(20):
        path = write_conv_model(tmp_path / f"seg{seed}.onnx", num_classes=len(CLASS_NAMES), seed=seed)
        segmenter = OnnxSegmenter(path, CLASS_NAMES, intra_op_threads=1)
        probe_image = np.stack([np.full((8, 8, 3), background, np.uint8),
                                np.full((8, 8, 3), patch, np.uint8)])
        labels = segmenter.segment(probe_image)
        if labels[0, 4, 4] != labels[1, 4, 4]:
            return path, segmenter
    raise AssertionError("no seed separates the colours")


def test_detection_alerts_on_a_pasted_patch_over_compressed_input(ros_python, ros_env, rclpy_context,
                                                                  tmp_path):
    background, red = (40, 60, 200), (220, 20, 20)
    model, segmenter = _model_that_sees_the_patch(tmp_path, background, red)
    params = {"segmenter_model": str(model), "class_names": "[" + ",".join(CLASS_NAMES) + "]",
              "threads": 1, "mode": "detection", "scheme": "column", "patch_height": 30, "patch_width": 30,
              "demasker": "telea", "input_transport": "compressed", "min_alert_region_area": 20,
              "expected_height": 120, "expected_width": 160}
    process = start_node(ros_python, ros_env, params)
    probe = Probe(rclpy_context, compressed=True)
    try:
        probe.wait_ready(process)
        clean = np.zeros((120, 160, 3), np.uint8)
        clean[:] = background
        attacked = clean.copy()
        attacked[50:80, 70:100] = red
        certifier = Certifier(segmenter, TeleaDemasker(), detection_masks(120, 160, (30, 30), "column"))
        for stamp, frame in (((1, 0), clean), ((2, 0), attacked)):
            probe.publisher.publish(png_msg(frame, stamp))
            assert probe.spin_until(lambda s=stamp: probe.by_stamp("alert", *s) and probe.by_stamp(
                "certification", *s) and probe.by_stamp("labels", *s), 20.0)
            expected = certifier.certify(frame)
            np.testing.assert_array_equal(decode_output(probe.by_stamp("labels", *stamp)[0]), expected.labels)
            verified = decode_output(probe.by_stamp("certification", *stamp)[0]) == 255
            np.testing.assert_array_equal(verified, expected.certified)
            status = probe.by_stamp("alert", *stamp)[0]
            assert status.mode == 1 and status.scheme == "column" and status.header.frame_id == "front"
            assert status.k == certifier.masks.k
        clean_status, attacked_status = probe.by_stamp("alert", 1, 0)[0], probe.by_stamp("alert", 2, 0)[0]
        assert attacked_status.alert
        assert attacked_status.alerted_fraction > clean_status.alerted_fraction
        assert not verified[50:80, 70:100].any(), "patch pixels must not be verified"
        boxes = [(r.x_offset, r.y_offset, r.x_offset + r.width, r.y_offset + r.height)
                 for r in attacked_status.alert_regions]
        assert any(x0 <= 85 < x1 and y0 <= 65 < y1 for x0, y0, x1, y1 in boxes), boxes

        # A frame of another size rebuilds the masks for it.
        small = attacked[:100, :140].copy()
        probe.publisher.publish(png_msg(small, (3, 0)))
        assert probe.spin_until(lambda: probe.by_stamp("alert", 3, 0) and probe.by_stamp("labels", 3, 0),
                                20.0)
        resized = Certifier(segmenter, TeleaDemasker(), detection_masks(100, 140, (30, 30), "column"))
        assert probe.by_stamp("alert", 3, 0)[0].k == resized.masks.k
        np.testing.assert_array_equal(decode_output(probe.by_stamp("labels", 3, 0)[0]),
                                      resized.certify(small).labels)
        # Undecodable compressed data is rejected, and the node carries on.
        bad = png_msg(small, (4, 0))
        bad.data = bytes(bad.data)[:40]
        probe.publisher.publish(bad)
        assert probe.spin_until(lambda: probe.by_stamp("alert", 4, 0), 10.0)
        assert probe.by_stamp("alert", 4, 0)[0].error_code == 1
        assert process.poll() is None
    finally:
        probe.destroy()


def _call(probe, client, request, timeout=10.0):
    assert client.wait_for_service(timeout_sec=timeout)
    future = client.call_async(request)
    assert probe.spin_until(future.done, timeout)
    return future.result()


def test_lifecycle_transitions(ros_python, ros_env, rclpy_context):
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    params = {"segmenter_plugin": "tests.apps.node.plugins:colour_segmenter", "demasker": "solid",
              "patch_height": 10, "patch_width": 10}
    process = start_node(ros_python, ros_env, params, "--no-autostart")
    probe = Probe(rclpy_context, reliable=True)
    change = probe.node.create_client(ChangeState, f"{NODE}/change_state")
    get = probe.node.create_client(GetState, f"{NODE}/get_state")

    def transition(transition_id):
        return _call(probe, change, ChangeState.Request(transition=Transition(id=transition_id))).success

    def state():
        return _call(probe, get, GetState.Request()).current_state.id

    def frame_gets_output(sec, expect):
        probe.spin_until(lambda: probe.publisher.get_subscription_count() > 0, 5.0)
        probe.publisher.publish(image_msg(np.full((60, 80, 3), 120, np.uint8), "rgb8", (sec, 0)))
        return probe.spin_until(lambda: bool(probe.by_stamp("alert", sec, 0)), 5.0 if expect else 1.0)

    try:
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert probe.publisher.get_subscription_count() == 0
        assert transition(Transition.TRANSITION_CONFIGURE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        assert not frame_gets_output(1, expect=False), "inactive node must not process"
        assert transition(Transition.TRANSITION_ACTIVATE)
        assert state() == State.PRIMARY_STATE_ACTIVE
        assert frame_gets_output(2, expect=True)
        assert not transition(Transition.TRANSITION_CLEANUP), "cleanup is not valid from active"
        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert not frame_gets_output(3, expect=False)
        assert transition(Transition.TRANSITION_CLEANUP)
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert transition(Transition.TRANSITION_CONFIGURE) and transition(Transition.TRANSITION_ACTIVATE)
        assert frame_gets_output(4, expect=True)
        assert transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert process.wait(timeout=10) == 0
    finally:
        probe.destroy()


@pytest.mark.parametrize(("params", "message"), [
    ({"mode": "bogus"}, "'mode' = 'bogus' is not one of"),
    ({"scheme": "block"}, "scheme 'block' is not valid in recovery mode"),
    ({"k": 3}, "K must be >= 2*N*T+1 = 5"),
    ({"patch_fraction": 2.0}, "patch_fraction"),
    ({"patch_height": 500, "patch_width": 500, "expected_height": 120, "expected_width": 160},
     "does not fit"),
    ({"segmenter_plugin": "no_such_module:make"}, "no_such_module"),
    ({"segmenter_model": "/nonexistent/model.onnx"}, "not found"),
    ({"working_height": 200, "expected_height": 120, "expected_width": 160},
     "working size 200x267 is larger than the 120x160 frame"),
    ({"resize_interpolation": "linear", "working_max_pixels": 0},
     "has no effect without working_height/working_width"),
])
def test_parameter_errors_fail_configure_with_one_clear_line(ros_python, ros_env, params, message):
    process = start_node(ros_python, ros_env, params)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("demasked-node: error: ") and message in last, err


def test_params_file_is_loaded_and_sigterm_exits_cleanly(ros_python, ros_env, rclpy_context, tmp_path):
    import signal

    from demasked_ros.apps.node.params import defaults_yaml

    params_file = tmp_path / "params.yaml"
    params_file.write_text(defaults_yaml().replace('demasker: "default"', 'demasker: "solid"')
                           .replace("min_alert_region_area: 100", "min_alert_region_area: 7"))
    process = ros_python("-m", "demasked_ros.apps.node.main", "--ros-args", "--params-file", str(params_file),
                         "-p", "segmenter_plugin:=tests.apps.node.plugins:colour_segmenter",
                         "-p", "patch_height:=10", "-p", "patch_width:=10",
                         cwd=str(REPO), extra_env={"PYTHONPATH": f"{REPO}:{ros_env.get('PYTHONPATH', '')}"})
    probe = Probe(rclpy_context, reliable=True)
    try:
        probe.wait_ready(process)
        probe.spin_until(lambda: bool(probe.messages("diagnostics")), 5.0)
        assert probe.diagnostics()["demasker"] == "SolidFillDemasker"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        probe.destroy()
