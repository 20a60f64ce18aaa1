"""Certifying at a working resolution without ROS: sizes, widened-patch masks, the certifier path."""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.apps.node.models import LoadedModels
from demasked_ros.apps.node.params import NodeConfigError, config_from_values
from demasked_ros.apps.node.resolution import (
    FrameCertifier,
    build_frame_certifier,
    describe_alarm,
    plan_masks,
)
from demasked_ros.core.classes import class_info_for
from demasked_ros.core.errors import CoreError
from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.core.spec import resolve_working_size
from demasked_ros.core.threat import patch_shape
from demasked_ros.datasets.procedural import street_scene
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.demaskers import TeleaDemasker
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.resizing import FrameResizer
from tests.tiny_models import colour_segmenter


def models() -> LoadedModels:
    segmenter = colour_segmenter()
    info, ignore = class_info_for(tuple(segmenter.class_names))
    return LoadedModels(segmenter=segmenter, demasker=TeleaDemasker(), executor=None, class_info=info,
                        ignore_index=ignore, model_name="colour", providers=("python",),
                        demasker_name="TeleaDemasker", executor_name="cpu")


@pytest.mark.parametrize(("requested", "frame", "expected"), [
    (None, (96, 128), None),
    ((48, 64), (96, 128), (48, 64)),
    ((48, 0), (96, 128), (48, 64)),
    ((0, 64), (72, 128), (36, 64)),
    ((0, 100), (1080, 1920), (56, 100)),  # 56.25 rounds down
    ((0, 101), (1080, 1920), (57, 101)),  # 56.81 rounds up
    ((1, 0), (1000, 10), (1, 1)),  # never 0
    ((96, 128), (96, 128), None),  # the camera size is no resize
    ((96, 64), (96, 128), (96, 64)),  # one axis may stay
])
def test_working_size_follows_the_aspect_ratio_when_one_side_is_given(requested, frame, expected):
    assert resolve_working_size(requested, frame) == expected


def test_working_size_larger_than_the_frame_is_rejected():
    with pytest.raises(CoreError, match="working size 100x133 is larger than the 96x128 frame"):
        resolve_working_size((100, 0), (96, 128))
    with pytest.raises(CoreError, match="larger than"):
        resolve_working_size((48, 200), (96, 128))


@pytest.mark.parametrize(("values", "message"), [
    ({"resize_interpolation": "linear", "working_max_pixels": 0},
     "has no effect without working_height/working_width"),
    ({"working_height": 10, "resize_interpolation": "cubic"}, "not one of"),
    ({"working_width": -1}, "outside"),
    ({"working_height": 200, "expected_height": 96, "expected_width": 128}, "larger than the 96x128"),
    ({"working_height": 48, "working_width": 300, "expected_height": 96, "expected_width": 128},
     "larger than"),
])
def test_bad_working_size_parameters_are_named(values, message):
    with pytest.raises(NodeConfigError, match=message):
        config_from_values(values)


def test_configured_working_size_and_interpolation_reach_the_config():
    config = config_from_values({"working_height": 48, "resize_interpolation": "nearest"})
    assert config.working_size == (48, 0) and config.resize_interpolation == "nearest"
    assert "working=48xauto (nearest)" in config.describe()
    assert config_from_values({}).working_size is None


@pytest.mark.parametrize("interpolation", ["area", "linear", "nearest"])
@pytest.mark.parametrize("patch", [0.01, (8, 8), (9, 20)])
def test_masks_are_built_at_the_working_size_for_the_widened_original_patch(interpolation, patch):
    values = {"working_height": 48, "working_width": 64, "resize_interpolation": interpolation,
              "scheme": "3-mask"}
    if isinstance(patch, tuple):
        values.update(patch_height=patch[0], patch_width=patch[1])
    else:
        values["patch_fraction"] = patch
    plan = plan_masks(config_from_values(values), 96, 128)
    original = patch_shape(96, 128, patch)  # the fraction is of the ORIGINAL area
    widened = FrameResizer((96, 128), (48, 64), interpolation).patch(original)
    assert plan.patch == original and plan.working_patch == widened
    assert plan.working_hw == (48, 64) and plan.camera_hw == (96, 128)
    assert widened[0] >= -(-original[0] // 2) and widened[1] >= -(-original[1] // 2)  # never below scale
    reference = recovery_masks(48, 64, widened, "3-mask")
    np.testing.assert_array_equal(plan.masks.visible, reference.visible)
    values = dict(plan.key_values())
    assert values["working_size"] == "48x64" and values["patch"] == f"{original[0]}x{original[1]}"
    assert values["working_patch"] == f"{widened[0]}x{widened[1]}"


def test_detection_masks_and_native_plans():
    config = config_from_values({"mode": "detection", "scheme": "row", "patch_height": 10, "patch_width": 10,
                                 "working_width": 64})
    plan = plan_masks(config, 96, 128)
    widened = FrameResizer((96, 128), (48, 64)).patch((10, 10))
    np.testing.assert_array_equal(plan.masks.visible, detection_masks(48, 64, widened, "row").visible)
    native = plan_masks(config_from_values({"patch_height": 10, "patch_width": 10}), 96, 128)
    assert native.resizer is None and native.working_hw == (96, 128) and native.working_patch == (10, 10)
    assert dict(native.key_values())["working_size"] == "native"
    with pytest.raises(NodeConfigError, match="cannot build masks for a 10x10 frame"):
        plan_masks(config_from_values({"patch_height": 20, "patch_width": 20, "working_height": 5}), 10, 10)


def test_frame_certifier_equals_resize_certify_upscale_bit_for_bit():
    config = config_from_values({"patch_fraction": 0.01, "working_height": 48, "working_width": 64,
                                 "threads": 1})
    certifier = build_frame_certifier(config, models(), 96, 128)
    frame, _ = street_scene(seed=3, height=96, width=128)
    result = certifier.certify(frame)
    resizer = FrameResizer((96, 128), (48, 64), "area")
    masks = recovery_masks(48, 64, resizer.patch(patch_shape(96, 128, 0.01)), "column")
    expected = Certifier(colour_segmenter(), TeleaDemasker(), masks).certify(resizer.resize(frame))
    assert 0.0 < expected.certified_fraction < 1.0  # a meaningful comparison
    assert result.labels.shape == result.certified.shape == (96, 128)
    np.testing.assert_array_equal(result.labels, resizer.upscale_labels(expected.labels))
    np.testing.assert_array_equal(result.certified,
                                  resizer.upscale_labels(expected.certified.astype(np.uint8)) == 1)
    assert result.branch_labels.shape == (masks.k, 48, 64)
    assert {"resize", "upscale", "total"} <= set(result.timings)
    with pytest.raises(NodeConfigError, match="plan's masks"):
        FrameCertifier(certifier.plan, Certifier(colour_segmenter(), TeleaDemasker(), masks))


@pytest.mark.parametrize("working", [{"working_height": 48, "working_width": 64}, {}],
                         ids=["resized", "native"])
def test_a_prepared_camera_frame_certifies_like_the_frame(working):
    """The pipeline's split: prepare (resize, check, stage) on one thread, certify on another."""
    config = config_from_values({"patch_fraction": 0.01, "threads": 1, **working})
    certifier = build_frame_certifier(config, models(), 96, 128)
    frames = [street_scene(seed=seed, height=96, width=128)[0] for seed in (3, 4)]
    prepared = [certifier.prepare(frame) for frame in frames]  # two prepared before either is certified
    for frame, ready in zip(frames, prepared, strict=True):
        expected, result = certifier.certify(frame), certifier.certify(ready)
        np.testing.assert_array_equal(result.labels, expected.labels)
        np.testing.assert_array_equal(result.certified, expected.certified)
        np.testing.assert_array_equal(result.branch_labels, expected.branch_labels)
        assert "stage" in result.timings and ("resize" in result.timings) == bool(working)
    other = build_frame_certifier(config, models(), 97, 128)
    with pytest.raises(EngineError, match="prepared for 96x128"):
        other.certify(prepared[0])
    with pytest.raises(EngineError, match="expects 96x128"):
        certifier.prepare(frames[0][:-1])


def test_certified_camera_pixels_keep_their_label_under_any_original_patch():
    """The soundness claim itself: attack the CAMERA frame with the original patch size."""
    config = config_from_values({"patch_height": 6, "patch_width": 6, "working_height": 24,
                                 "working_width": 32, "threads": 1, "scheme": "column"})
    certifier = build_frame_certifier(config, models(), 48, 64)
    frame, _ = street_scene(seed=8, height=48, width=64)
    clean = certifier.certify(frame)
    assert clean.certified.any()
    rng = np.random.default_rng(4)
    changed_somewhere = False
    for _ in range(16):
        row, col = int(rng.integers(0, 48 - 6 + 1)), int(rng.integers(0, 64 - 6 + 1))
        for content in (rng.integers(0, 256, (6, 6, 3)), np.array([250, 0, 0]), np.array([0, 0, 0])):
            attacked = frame.copy()
            attacked[row:row + 6, col:col + 6] = content.astype(np.uint8)
            result = certifier.certify(attacked)
            changed_somewhere |= bool((result.labels != clean.labels).any())
            np.testing.assert_array_equal(result.labels[clean.certified], clean.labels[clean.certified])
    assert changed_somewhere, "the attacks should change some (uncertified) labels"


def test_alarm_is_scored_at_the_working_size_and_reported_in_camera_pixels(tmp_path):
    from demasked_ros.core.alarm import AlarmCalibration, AlarmParams, calibration_key, save_calibrations

    frame, _ = street_scene(seed=5, height=96, width=128)
    native = build_frame_certifier(config_from_values({"threads": 1, "alarm_calibration": ""}),
                                   models(), 96, 128)
    result, outcome = native.certify_with_alarm(frame)
    assert outcome.alarmed is None  # no calibration: no calibrated decision
    np.testing.assert_array_equal(result.labels, native.certify(frame).labels)
    expected = native.alarm.evaluate(result.branch_labels, result.labels)
    assert outcome == expected
    config = config_from_values({"threads": 1, "working_height": 48, "working_width": 64,
                                 "alarm_calibration": str(tmp_path / "alarm.json"), "demasker": "telea"})
    plan_key = calibration_key(plan_masks(config, 96, 128).masks, "default+telea")
    save_calibrations(tmp_path / "alarm.json", [AlarmCalibration(plan_key, -1.0, 0.01, 5, AlarmParams())])
    working = build_frame_certifier(config, models(), 96, 128)
    _, scaled = working.certify_with_alarm(frame)
    assert scaled.alarmed is True  # threshold -1: every score alarms, so the calibration was found
    if scaled.roi is not None:
        y, x, h, w = scaled.roi
        assert y >= 0 and y + h <= 96 and x >= 0 and x + w <= 128
        assert h >= 2 * working.masks.patch[0] - 2  # scaled up from the working size
    with pytest.raises(NodeConfigError, match="alarm_calibration"):
        build_frame_certifier(config_from_values({"alarm_calibration": str(tmp_path / "missing.json")}),
                              models(), 96, 128)


def test_the_persistent_alarm_follows_the_frame_stamps(tmp_path):
    from demasked_ros.core.alarm import AlarmCalibration, AlarmParams, calibration_key, save_calibrations
    from demasked_ros.core.alarm_temporal import TemporalCalibration, TemporalParams

    frame, _ = street_scene(seed=5, height=96, width=128)
    config = config_from_values({"threads": 1, "alarm_calibration": str(tmp_path / "alarm.json")})
    temporal = TemporalCalibration(1e6, 0.01, 10, TemporalParams(window=2, spread=0, max_gap=0.1))
    key = calibration_key(plan_masks(config, 96, 128).masks)
    save_calibrations(tmp_path / "alarm.json", [AlarmCalibration(key, 1e6, 0.01, 5, AlarmParams(),
                                                                 temporal=temporal)])
    certifier = build_frame_certifier(config, models(), 96, 128)
    first = certifier.certify_with_alarm(frame, stamp=10.0)[1]
    assert first.score > 0.0, "the scene should give the alarm some evidence"
    assert first.alarmed is False and first.persistent_score == pytest.approx(first.score / 2)
    second = certifier.certify_with_alarm(frame, stamp=10.05)[1]  # the same evidence, 50 ms later
    assert second.persistent_score == pytest.approx(first.score)
    late = certifier.certify_with_alarm(frame, stamp=11.0)[1]  # a 0.95 s gap restarts the history
    assert late.persistent_score == pytest.approx(first.score / 2)


def test_a_calibration_made_with_other_model_files_is_ignored(tmp_path, caplog):
    from demasked_ros.core.alarm import AlarmCalibration, AlarmParams, calibration_key, save_calibrations
    from demasked_ros.engines.factory import model_fingerprint

    frame, _ = street_scene(seed=5, height=96, width=128)
    config = config_from_values({"threads": 1, "alarm_calibration": str(tmp_path / "alarm.json"),
                                 "demasker": "telea"})
    key = calibration_key(plan_masks(config, 96, 128).masks, "default+telea")
    own = model_fingerprint("default", "telea")
    assert own["demasker"] == "telea" and len(own["segmenter"]) == 64
    for recorded, found in (({}, True), (own, True), ({**own, "segmenter": "0" * 64}, False)):
        save_calibrations(tmp_path / "alarm.json",
                          [AlarmCalibration(key, -1.0, 0.01, 5, AlarmParams(), models_sha256=recorded)])
        caplog.clear()
        certifier = build_frame_certifier(config, models(), 96, 128)
        outcome = certifier.certify_with_alarm(frame)[1]
        assert outcome.alarmed is (True if found else None)  # threshold -1 alarms whenever it is used
        assert ("made with other model files" in caplog.text) is not found
        assert describe_alarm(certifier.alarm).startswith("calibrated" if found else "uncalibrated")
