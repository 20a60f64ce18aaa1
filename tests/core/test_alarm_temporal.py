"""The persistent (temporal) patch alarm: pooling, the window mean, gaps, joint calibration, files."""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.core.alarm import (
    AlarmCalibration,
    AlarmGeometry,
    AlarmParams,
    PatchAlarm,
    calibration_key,
    load_calibrations,
    patch_evidence,
    save_calibrations,
)
from demasked_ros.core.alarm_stats import calibrate_joint_threshold
from demasked_ros.core.alarm_temporal import (
    TemporalCalibration,
    TemporalParams,
    TemporalState,
    persistent_scores,
    spread_max,
)
from demasked_ros.core.errors import CoreError
from demasked_ros.core.masks import detection_masks
from tests.core.test_alarm import _attacked


def _one_hot(grid: tuple[int, int], row: int, col: int, value: float = 1.0) -> np.ndarray:
    scores = np.zeros(grid[0] * grid[1])
    scores[row * grid[1] + col] = value
    return scores


def test_spread_max_pools_a_square_neighbourhood_on_the_grid():
    pooled = spread_max(_one_hot((5, 6), 2, 3, 4.0), (5, 6), 1).reshape(5, 6)
    assert (pooled[1:4, 2:5] == 4.0).all() and pooled.sum() == 9 * 4.0
    edge = spread_max(_one_hot((5, 6), 0, 0), (5, 6), 1).reshape(5, 6)
    assert edge[:2, :2].all() and edge.sum() == 4  # clipped at the border, no wrap-around
    assert (spread_max(_one_hot((5, 6), 2, 3), (5, 6), 0) == _one_hot((5, 6), 2, 3)).all()
    with pytest.raises(CoreError):
        spread_max(np.zeros(7), (2, 3), 1)


def test_the_persistent_score_is_the_window_mean_at_one_place():
    grid, params = (4, 4), TemporalParams(window=3, spread=0)
    steady = [_one_hot(grid, 1, 1, 3.0)] * 4
    # frames not there yet count 0: 1/3, 2/3 of the score, then all of it
    np.testing.assert_allclose(persistent_scores(steady, grid, params), [1.0, 2.0, 3.0, 3.0])
    wandering = [_one_hot(grid, i % 4, 3 - i % 4, 3.0) for i in range(4)]  # a new place every frame
    np.testing.assert_allclose(persistent_scores(wandering, grid, params), [1.0] * 4)
    # a patch that moves one grid step per frame keeps its score with spread 1, not with spread 0
    drifting = [_one_hot(grid, 1, i, 3.0) for i in range(4)]
    assert persistent_scores(drifting, grid, TemporalParams(window=2, spread=1))[-1] == pytest.approx(3.0)
    assert persistent_scores(drifting, grid, TemporalParams(window=2, spread=0))[-1] == pytest.approx(1.5)


def test_a_gap_or_time_going_backwards_restarts_the_history():
    grid = (2, 2)
    state = TemporalState(grid, TemporalParams(window=2, spread=0, max_gap=0.1))
    frame = _one_hot(grid, 0, 1, 2.0)
    assert state.update(frame, 1.0) == (1.0, 1)
    assert state.update(frame, 1.05)[0] == pytest.approx(2.0)
    assert state.update(frame, 1.5)[0] == pytest.approx(1.0)   # 0.45 s gap: restarted
    assert state.update(frame, 1.55)[0] == pytest.approx(2.0)
    assert state.update(frame, 1.40)[0] == pytest.approx(1.0)  # a bag looped: restarted
    state.reset()
    assert state.update(frame)[0] == pytest.approx(1.0)
    with pytest.raises(CoreError):
        TemporalParams(window=1)
    with pytest.raises(CoreError):
        persistent_scores([frame], grid, stamps=[0.0, 1.0])


def test_joint_calibration_counts_both_rules_against_the_rate():
    persistent = np.arange(100, dtype=float)
    none = np.zeros(100, dtype=bool)
    assert calibrate_joint_threshold(persistent, none, 0.02) == 97.0  # 98 and 99 may alarm
    first = none.copy()
    first[10] = True  # the single-frame rule already alarms on one clean frame
    threshold = calibrate_joint_threshold(persistent, first, 0.02)
    assert threshold == 98.0
    assert ((persistent > threshold) | first).sum() == 2
    first[:5] = True  # the single-frame rule alone exceeds the allowance: add no alarm
    assert calibrate_joint_threshold(persistent, first, 0.02) == 99.0
    assert calibrate_joint_threshold([1.0, 2.0], [False, False], 0.9) == 1.0  # floor(1.8) = 1 may
    with pytest.raises(CoreError):
        calibrate_joint_threshold([1.0], [True, False], 0.01)
    with pytest.raises(CoreError):
        calibrate_joint_threshold([1.0], [False], 1.0)


def test_position_scores_are_the_per_position_evidence():
    masks = detection_masks(120, 160, (10, 10), "column")
    geometry = AlarmGeometry(masks, AlarmParams(open_radius=1))
    branches, output = _attacked(masks, 60, 70, 12)
    evidence = patch_evidence(branches, output, geometry)
    assert evidence.positions.shape == (geometry.grid_shape[0] * geometry.grid_shape[1],)
    assert evidence.positions.max() == evidence.score
    y, x = geometry.positions[int(np.argmax(evidence.positions))]
    assert evidence.roi is not None and (y, x) == evidence.roi[:2]


def _calibrated(masks, single: float, persistent: float, window: int = 2) -> AlarmCalibration:
    params = TemporalParams(window=window, spread=0, max_gap=0.2)
    temporal = TemporalCalibration(persistent, 0.01, 100, params)
    return AlarmCalibration(calibration_key(masks), single, 0.01, 10, AlarmParams(open_radius=1),
                            temporal=temporal)


def test_the_node_alarm_fires_on_a_patch_that_persists_and_not_on_one_frame():
    masks = detection_masks(120, 160, (10, 10), "column")
    branches, output = _attacked(masks, 60, 70, 12)
    score = PatchAlarm(masks).evaluate(branches, output).score
    clean = (np.zeros_like(branches), np.zeros_like(output))
    # single-frame threshold above the patch's score, persistent one just below it
    alarm = PatchAlarm(masks, _calibrated(masks, score + 1.0, score * 0.9))
    first = alarm.evaluate(branches, output, stamp=0.0)
    assert first.alarmed is False and first.persistent_score == pytest.approx(score / 2)
    second = alarm.evaluate(branches, output, stamp=0.066)
    assert second.alarmed is True and second.persistent_score == pytest.approx(score)
    assert second.roi is not None and second.roi[2:] == (10, 10)
    alarm.reset()
    assert alarm.evaluate(branches, output, stamp=0.1).alarmed is False  # a reset breaks the chain
    assert alarm.evaluate(*clean, stamp=0.133).alarmed is False  # patch gone: mean halves
    assert alarm.evaluate(branches, output, stamp=0.2).alarmed is False
    assert alarm.evaluate(branches, output, stamp=0.9).alarmed is False  # a gap breaks it too
    assert alarm.evaluate(branches, output, stamp=0.95).alarmed is True
    plain = PatchAlarm(masks, AlarmCalibration(calibration_key(masks), score + 1.0, 0.01, 10,
                                               AlarmParams(open_radius=1)))
    assert plain.evaluate(branches, output, 0.0).alarmed is False
    assert plain.evaluate(branches, output, 0.05) == plain.evaluate(branches, output, 0.1)
    assert plain.evaluate(branches, output, 0.15).persistent_score == 0.0


def test_temporal_calibration_round_trips_and_old_files_still_load(tmp_path):
    masks = detection_masks(120, 160, (10, 10), "column")
    entry = _calibrated(masks, 5.0, 3.5, window=3)
    path = tmp_path / "alarm.json"
    save_calibrations(path, [entry, AlarmCalibration("old", 2.0, 0.01, 10, AlarmParams())])
    loaded = load_calibrations(path)
    assert loaded[entry.key] == entry and loaded[entry.key].temporal is not None
    assert loaded["old"].temporal is None and "temporal" not in loaded["old"].to_json()
    with pytest.raises(CoreError):
        TemporalCalibration.from_json({"threshold": 1.0})


def test_the_shipped_calibration_has_a_persistent_threshold_for_detection_only():
    from pathlib import Path

    import demasked_ros

    shipped = load_calibrations(Path(demasked_ros.__file__).parent / "models" / "alarm_calibration.json")
    detection = shipped["detection-column-42x42-360x480-k11-default"]
    assert detection.temporal is not None and detection.temporal.params.window >= 2
    assert 0.0 < detection.temporal.threshold < detection.threshold  # persistence lets it sit lower
    assert shipped["recovery-column-30x30-360x480-k5-default"].temporal is None  # see docs/ATTACKS.md
