"""Result messages: the shared CertificationStatus fields and encoded outputs (node and evaluator bag)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from demasked_ros.core.visualize import certification_image, overlay
from demasked_ros.rosio import messages
from demasked_ros.rosio.image_codec import decode_labels, decode_raw
from demasked_ros.rosio.messages import Geometry, failure_messages, result_messages

MSG = Path(__file__).resolve().parents[2] / "msg" / "CertificationStatus.msg"
COLORS = ((10, 20, 30), (200, 0, 0), (0, 200, 0))


def test_constants_match_the_message_definition():
    defined = dict(re.findall(r"^uint8 (\w+)=(\d+)", MSG.read_text(), re.MULTILINE))
    assert {f"MODE_{m.upper()}": str(v) for m, v in messages.MODE_CODES.items()} == \
        {k: v for k, v in defined.items() if k.startswith("MODE_")}
    for name, value in defined.items():
        if name.startswith("ERROR_"):
            assert getattr(messages, name) == int(value), name


def test_result_messages_encode_labels_certificate_overlay_and_status():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (40, 50)).astype(np.uint8)
    certified = np.ones((40, 50), bool)
    certified[5:25, 10:30] = False
    out = result_messages(image, labels, certified, Geometry("detection", "row", (6, 7), 9, 2), COLORS,
                          min_region_area=10)
    assert out.labels and out.certification and out.overlay
    np.testing.assert_array_equal(decode_labels(out.labels.encoding, 40, 50, out.labels.step,
                                                out.labels.data), labels)
    np.testing.assert_array_equal(decode_labels("mono8", 40, 50, 50, out.certification.data),
                                  certification_image(certified))
    np.testing.assert_array_equal(decode_raw("rgb8", 40, 50, 150, out.overlay.data, 10**6),
                                  overlay(image, labels, certified, COLORS))
    status = out.status
    assert (status["mode"], status["scheme"]) == (1, "row")
    assert (status["patch_height"], status["patch_width"]) == (6, 7)
    assert (status["k"], status["t"], status["error_code"], status["error_text"]) == (9, 2, 0, "")
    assert status["certified_fraction"] == certified.mean() and status["alert"] is True
    assert status["alerted_fraction"] == 1.0 - certified.mean()
    assert status["alert_regions"] == [(10, 5, 20, 20)]
    everywhere = np.ones((40, 50), bool)
    whole = result_messages(image, labels, everywhere, Geometry("recovery", "column"), COLORS,
                            overlay_alpha=None)
    assert whole.overlay is None and whole.status["alert"] is False
    assert whole.status["alerted_fraction"] == 0.0


def test_failures_certify_nothing():
    out = failure_messages(Geometry("recovery", "column"), messages.ERROR_TIMEOUT, "late", (4, 5))
    assert out.labels is None and out.overlay is None and out.certification is not None
    assert out.certification.data == bytes(20)
    status = out.status
    assert (status["certified_fraction"], status["alert"], status["alerted_fraction"]) == (0.0, True, 1.0)
    assert (status["error_code"], status["error_text"]) == (2, "late")
    assert status["alert_regions"] == [(0, 0, 4, 5)]
    assert failure_messages(Geometry("recovery", "column"), 5, "x").certification is None


def test_alarm_fields_and_calibrated_alert():
    from demasked_ros.core.alarm import AlarmOutcome

    image = np.zeros((40, 50, 3), np.uint8)
    labels = np.zeros((40, 50), np.uint8)
    certified = np.ones((40, 50), bool)
    certified[0:3, :] = False  # some uncertified pixels: the old rule would alert
    geometry = Geometry("detection", "column", (6, 6), 9, 8)
    quiet = result_messages(image, labels, certified, geometry, COLORS, overlay_alpha=None,
                            alarm=AlarmOutcome(0.4, (10, 20, 6, 6), False, persistent_score=0.3))
    assert quiet.status["alert"] is False  # calibrated alarm: below threshold, no alert
    assert abs(quiet.status["persistent_score"] - 0.3) < 1e-9
    assert quiet.status["patch_score"] == 0.4 and quiet.status["suspected_patch"] == (20, 10, 6, 6)
    loud = result_messages(image, labels, np.ones((40, 50), bool), geometry, COLORS, overlay_alpha=None,
                           alarm=AlarmOutcome(3.0, (1, 2, 6, 6), True))
    assert loud.status["alert"] is True and loud.status["certified_fraction"] == 1.0
    uncalibrated = result_messages(image, labels, certified, geometry, COLORS, overlay_alpha=None,
                                   alarm=AlarmOutcome(0.4, None, None))
    assert uncalibrated.status["alert"] is True and uncalibrated.status["suspected_patch"] == (0, 0, 0, 0)
    failed = failure_messages(geometry, messages.ERROR_TIMEOUT, "late", (4, 5)).status
    assert failed["alert"] is True and failed["patch_score"] == 0.0 and failed["persistent_score"] == 0.0
    assert failed["suspected_patch"] == (0, 0, 0, 0)


def test_region_options_remove_boundary_bands():
    from demasked_ros.rosio.messages import RegionOptions

    image = np.zeros((60, 80, 3), np.uint8)
    labels = np.zeros((60, 80), np.uint8)
    certified = np.ones((60, 80), bool)
    certified[::10, :] = certified[:, ::10] = False  # a 1-pixel boundary web spanning the frame
    certified[20:35, 30:50] = False
    old = result_messages(image, labels, certified, Geometry("recovery", "column"), COLORS,
                          overlay_alpha=None, min_region_area=10)
    assert old.status["alert_regions"][0][2:] == (60, 80)  # one frame-sized box
    new = result_messages(image, labels, certified, Geometry("recovery", "column"), COLORS,
                          overlay_alpha=None, regions_options=RegionOptions(10, 32, 2, 0.25))
    assert new.status["alert_regions"] == [(30, 20, 15, 21)]  # the blob (+ the line at x = 50 it touches)
