"""The patch alarm: opening, patch evidence and localisation, calibration maths, ROC, files."""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.core.alarm import (
    AlarmCalibration,
    AlarmGeometry,
    AlarmParams,
    alarm_rate,
    calibrate_threshold,
    calibration_key,
    load_calibrations,
    opening,
    patch_evidence,
    roc_auc,
    roc_curve,
    save_calibrations,
)
from demasked_ros.core.errors import CoreError
from demasked_ros.core.masks import detection_masks, recovery_masks


def test_opening_removes_thin_bands_and_keeps_blobs():
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:7, :] = True          # a 2-pixel band (a class boundary)
    mask[20:30, 10:22] = True    # a blob
    opened = opening(mask, 2)
    assert not opened[5:7].any()
    assert opened[20:30, 10:22].all() and opened.sum() == 120
    assert (opening(mask, 0) == mask).all()


def test_calibration_threshold_hits_the_requested_rate():
    scores = np.arange(100, dtype=float)
    threshold = calibrate_threshold(scores, 0.01)
    assert threshold == 98.0 and alarm_rate(scores, threshold) == pytest.approx(0.01)
    assert calibrate_threshold(scores, 0.0) == 99.0 and alarm_rate(scores, 99.0) == 0.0
    assert calibrate_threshold(scores, 0.05) == 94.0
    ties = [1.0] * 50 + [2.0] * 50
    assert alarm_rate(ties, calibrate_threshold(ties, 0.3)) <= 0.3  # ties never push it over
    assert calibrate_threshold(list(range(50)), 0.01) == 49  # floor(0.5) = 0 frames may alarm
    with pytest.raises(CoreError):
        calibrate_threshold([], 0.01)
    with pytest.raises(CoreError):
        calibrate_threshold([1.0], 1.0)


def test_roc_auc_and_curve():
    assert roc_auc([0, 1, 2], [3, 4]) == 1.0
    assert roc_auc([3, 4], [0, 1, 2]) == 0.0
    assert roc_auc([1, 2], [1, 2]) == 0.5
    fpr, tpr = roc_curve([0, 1], [2, 3])
    assert fpr[0] == 0.0 and tpr[-1] == 1.0 and fpr[-1] == 1.0
    assert np.trapezoid(tpr, fpr) == pytest.approx(1.0)


def _attacked(masks, y: int, x: int, extent: int):
    """Clean branches equal the output; a square region near (y, x) shows the patch's signature."""
    k, h, w = masks.visible.shape
    output = np.zeros((h, w), dtype=np.int32)
    branches = np.zeros((k, h, w), dtype=np.int32)
    ph, pw = masks.patch
    window = (slice(max(0, y - extent), y + ph + extent), slice(max(0, x - extent), x + pw + extent))
    touched = (masks.visible[:, y:y + ph, x:x + pw]).any(axis=(1, 2))
    group = ~touched if masks.mode == "detection" else touched
    if masks.mode == "detection":
        output[window] = 3  # f(x) changed; the hiding branches keep the clean label
        branches[:, window[0], window[1]] = np.where(group[:, None, None], 0, 3)
    else:
        branches[group, window[0], window[1]] = 5  # the seeing branches changed, the vote did not
    return branches, output


@pytest.mark.parametrize("mode", ["recovery", "detection"])
def test_patch_evidence_scores_and_localises_a_coherent_group(mode):
    masks = recovery_masks(120, 160, (10, 10), "column") if mode == "recovery" else \
        detection_masks(120, 160, (10, 10), "column")
    geometry = AlarmGeometry(masks, AlarmParams(open_radius=1))
    branches, output = _attacked(masks, 60, 70, 12)
    evidence = patch_evidence(branches, output, geometry, keep_map=True)
    assert evidence.score > 1.0 and evidence.roi is not None and evidence.evidence is not None
    y, x, h, w = evidence.roi
    assert (h, w) == (10, 10) and abs(y - 60) <= 12 + 5 and abs(x - 70) <= 12 + 5
    clean = patch_evidence(np.zeros_like(branches), np.zeros_like(output), geometry)
    assert clean.score == 0.0 and clean.roi is None


def test_thin_boundary_disagreement_scores_nothing():
    masks = detection_masks(120, 160, (10, 10), "column")
    geometry = AlarmGeometry(masks, AlarmParams(open_radius=2))
    branches, output = _attacked(masks, 60, 70, 12)
    hiding_first = int(np.flatnonzero(~masks.visible[:, 0, :10].any(axis=1))[0])
    thin = np.zeros_like(branches)
    thin[hiding_first, 40:43, :] = 1  # one hiding group disagrees along a 3-pixel boundary band only
    assert patch_evidence(thin, output * 0, geometry).score == 0.0
    thick = np.zeros_like(branches)
    thick[hiding_first, 40:50, :10] = 1  # the same group over a 10 x 10 blob does count
    assert patch_evidence(thick, output * 0, geometry).score > 0.5
    with pytest.raises(CoreError):
        patch_evidence(branches[:2], output, geometry)


def test_calibration_file_round_trip(tmp_path):
    masks = recovery_masks(120, 160, (10, 10), "column")
    entry = AlarmCalibration(calibration_key(masks), 1.5, 0.01, 300, AlarmParams(tolerance=2), data="x")
    path = tmp_path / "alarm.json"
    save_calibrations(path, [entry])
    other = AlarmCalibration("other", 2.0, 0.05, 10, AlarmParams())
    save_calibrations(path, [other])
    loaded = load_calibrations(path)
    assert loaded[entry.key] == entry and loaded["other"] == other
    assert entry.alarmed(1.6) and not entry.alarmed(1.5)
    assert entry.key == "recovery-column-10x10-120x160-k5-default"
    path.write_text("{}")
    with pytest.raises(CoreError):
        load_calibrations(path)


def test_patch_alarm_uses_the_matching_calibration():
    from demasked_ros.core.alarm import PatchAlarm

    masks = detection_masks(120, 160, (10, 10), "column")
    branches, output = _attacked(masks, 60, 70, 12)
    uncalibrated = PatchAlarm.from_calibrations(masks, {})
    outcome = uncalibrated.evaluate(branches, output)
    assert outcome.alarmed is None and outcome.score > 1.0 and outcome.roi is not None
    low = AlarmCalibration(calibration_key(masks), 0.5, 0.01, 10, AlarmParams(open_radius=1))
    high = AlarmCalibration(calibration_key(masks), 1e6, 0.01, 10, AlarmParams(open_radius=1))
    assert PatchAlarm.from_calibrations(masks, {low.key: low}).evaluate(branches, output).alarmed is True
    assert PatchAlarm.from_calibrations(masks, {high.key: high}).evaluate(branches, output).alarmed is False
    assert PatchAlarm(masks, low).evaluate(np.zeros_like(branches), output * 0).alarmed is False


def test_opening_equals_the_integral_image_definition():
    from demasked_ros.core.geometry import window_sums

    def reference(mask, radius):
        side = 2 * radius + 1
        eroded = window_sums(np.pad(mask, radius), (side, side)) == side * side
        return window_sums(np.pad(eroded, radius), (side, side)) > 0

    rng = np.random.default_rng(0)
    for radius in (1, 2, 3):
        for density in (0.3, 0.7, 0.95):
            mask = rng.random((37, 53)) < density
            np.testing.assert_array_equal(opening(mask, radius), reference(mask, radius))


def test_a_calibration_is_only_for_the_models_it_records():
    masks = detection_masks(120, 160, (10, 10), "column")
    made = AlarmCalibration(calibration_key(masks), 2.0, 0.01, 10, AlarmParams(),
                            models_sha256={"segmenter": "aa", "demasker": "telea"})
    assert made.made_for({"segmenter": "aa", "demasker": "telea"})
    assert not made.made_for({"segmenter": "bb", "demasker": "telea"})  # retrained segmenter
    assert not made.made_for({"demasker": "telea"})  # a plugin: no file to compare
    assert not made.made_for({"segmenter": "aa", "demasker": "ns"})
    legacy = AlarmCalibration(made.key, 2.0, 0.01, 10, AlarmParams())
    assert legacy.made_for({"segmenter": "bb"}) and "models_sha256" in legacy.to_json()
    assert AlarmCalibration.from_json(made.to_json()) == made
    older_file = {k: v for k, v in legacy.to_json().items() if k != "models_sha256"}
    assert AlarmCalibration.from_json(older_file) == legacy
    with pytest.raises(CoreError):
        AlarmCalibration.from_json({**made.to_json(), "models_sha256": ["aa"]})
