"""Issue 11: certificate and alert go out before labels; a failed publish is followed by an alert."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.apps.node.harness import image_msg

pytestmark = pytest.mark.ros


class Recorder:
    def __init__(self, name, log, fail=False):
        self.name, self.log, self.fail = name, log, fail

    def publish(self, msg):
        if self.fail:
            raise RuntimeError(f"{self.name} publisher broke")
        self.log.append((self.name, getattr(msg, "error_code", None)))


@pytest.fixture
def node(rclpy_context, ros_interfaces):
    from rclpy.parameter import Parameter

    from demasked_ros.apps.node.node import DemaskedNode

    overrides = [Parameter("segmenter_plugin", value="tests.apps.node.plugins:colour_segmenter"),
                 Parameter("demasker", value="solid"), Parameter("publish_overlay", value=False),
                 Parameter("patch_height", value=6), Parameter("patch_width", value=6)]
    instance = DemaskedNode(context=rclpy_context, parameter_overrides=overrides)
    instance.trigger_configure()
    assert instance.state_name == "inactive", instance.configure_error
    instance.trigger_activate()
    yield instance
    instance.trigger_shutdown()
    instance.destroy_node()


def run_frame(node, failing: str | None):
    from demasked_ros.apps.node.outputs import Frame

    log: list[tuple[str, int | None]] = []
    for name in ("labels", "certification", "alert"):
        node._pubs[name] = Recorder(name, log, fail=(name == failing))
    rgb = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    frame = Frame(msg=image_msg(rgb, "rgb8", (5, 0)), received=time.monotonic())
    if failing is None:
        node._certify_frame(frame, node._prepare_frame(frame))
    else:  # the worker thread passes the error on to its handler, which logs it
        with pytest.raises(RuntimeError, match="publisher broke"):
            node._certify_frame(frame, node._prepare_frame(frame))
    return log


def test_certificate_and_alert_precede_labels(node):
    assert run_frame(node, None) == [("certification", None), ("alert", 0), ("labels", None)]


def test_a_failed_labels_publish_is_followed_by_an_error_alert(node):
    log = run_frame(node, "labels")
    assert log[:2] == [("certification", None), ("alert", 0)]
    assert log[-1] == ("alert", 5)  # ERROR_INTERNAL for the same frame; no labels went out
    assert ("labels", None) not in log


def test_a_failed_certificate_publish_sends_an_alert_and_no_labels(node):
    log = run_frame(node, "certification")
    assert log == [("alert", 5)]


def test_the_alarm_gets_the_header_stamp_and_a_failure_resets_its_history(node, monkeypatch):
    """The persistent alarm's gap rule reads the camera stamp; a failed frame breaks its chain."""
    from demasked_ros.apps.node.outputs import Frame

    run_frame(node, None)  # builds the certifier for this size
    certifier = node._certifier
    stamps, resets = [], []
    original = certifier.certify_with_alarm

    def spy(staged, cancel=None, stamp=None):
        stamps.append(stamp)
        return original(staged, cancel=cancel, stamp=stamp)

    monkeypatch.setattr(certifier, "certify_with_alarm", spy)
    monkeypatch.setattr(certifier.alarm, "reset", lambda: resets.append(True))
    log = run_frame(node, None)
    assert stamps == [5.0] and ("alert", 0) in log and not resets
    rgb = np.zeros((48, 64, 3), dtype=np.uint8)
    node._fail(Frame(msg=image_msg(rgb, "rgb8", (6, 0)), received=time.monotonic()), 2, "late")
    assert resets == [True]
