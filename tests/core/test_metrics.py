import math

import numpy as np
import pytest

from demasked_ros.core.errors import CoreError
from demasked_ros.core.metrics import CertificationMetrics

V = 9  # ignore index in these tests


def frame_a():
    truth = np.array([[0, 0, 1, 1], [0, 2, 2, V]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 0, 2]])
    cert = np.array([[True, True, False, True], [False, True, True, True]])
    return pred, cert, truth


def test_single_frame_hand_computed():
    m = CertificationMetrics(3, ignore_index=V)
    per_frame = m.add(*frame_a())
    s = m.summary(big_classes=[0])
    # valid pixels: 7. correct: (0,0),(0,2),(0,3),(1,0),(1,1) = 5. certified & correct: (0,0),(0,3),(1,1) = 3.
    assert per_frame["pct_certified"] == pytest.approx(100 * 3 / 7)
    assert per_frame["accuracy"] == pytest.approx(100 * 5 / 7)
    # correct but alerted: (0,2),(1,0) = 2 of 5.
    assert per_frame["far"] == pytest.approx(100 * 2 / 5)
    # IoU: class0 tp2 fp1 fn1 -> 2/4; class1 tp2 fp1 fn0 -> 2/3; class2 tp1 fp0 fn1 -> 1/2.
    assert s["mIoU"] == pytest.approx(100 * (0.5 + 2 / 3 + 0.5) / 3)
    # recall: class0 2/3, class1 2/2, class2 1/2.  certified recall: class0 1/3, class1 1/2, class2 1/2.
    assert s["mR"] == pytest.approx(100 * (2 / 3 + 1 + 0.5) / 3)
    assert s["cmR"] == pytest.approx(100 * (1 / 3 + 0.5 + 0.5) / 3)
    assert s["big_mR"] == pytest.approx(100 * 2 / 3)
    assert s["big_cmR"] == pytest.approx(100 / 3)
    assert s["frames"] == 1


def test_classes_absent_from_a_frame_and_the_dataset():
    m = CertificationMetrics(4, ignore_index=V)
    m.add(*frame_a())
    truth = np.array([[1, 1], [1, 1]])
    m.add(np.array([[1, 1], [1, 3]]), np.ones((2, 2), bool), truth)
    s = m.summary()
    # class 3 never occurs in ground truth: left out of mR/cmR; it was predicted once -> IoU 0 counts.
    rows = m.per_class()
    assert math.isnan(rows[3]["recall"]) and rows[3]["IoU"] == 0.0
    assert rows[1]["recall"] == pytest.approx(100 * 5 / 6)
    assert rows[1]["certified_recall"] == pytest.approx(100 * 4 / 6)
    assert s["mR"] == pytest.approx(100 * (2 / 3 + 5 / 6 + 0.5) / 3)
    # %C is a mean over frames: (3/7 + 3/4) / 2.
    assert s["pct_certified"] == pytest.approx(100 * (3 / 7 + 3 / 4) / 2)


def test_void_pixels_are_ignored_everywhere():
    m = CertificationMetrics(2, ignore_index=V)
    truth = np.full((3, 3), V)
    truth[0, 0] = 1
    pred = np.zeros((3, 3), int)
    pred[0, 0] = 1
    m.add(pred, np.zeros((3, 3), bool), truth)
    s = m.summary()
    assert s["mIoU"] == pytest.approx(100.0)
    assert s["pct_certified"] == 0.0
    assert s["FAR"] == pytest.approx(100.0)


def test_frame_with_only_void_is_counted_but_not_averaged():
    m = CertificationMetrics(2, ignore_index=V)
    m.add(np.zeros((2, 2), int), np.ones((2, 2), bool), np.full((2, 2), V))
    m.add(np.zeros((2, 2), int), np.ones((2, 2), bool), np.zeros((2, 2), int))
    s = m.summary()
    assert s["frames"] == 2
    assert s["pct_certified"] == pytest.approx(100.0)


def test_big_classes_from_data():
    m = CertificationMetrics(3, ignore_index=V)
    # class 0 covers 75 % of frame 1 and 50 % of frame 2; class 1 25 % and 12.5 %; class 2 37.5 %.
    t1 = np.array([[0, 0, 0, 1]])
    t2 = np.array([[0, 0, 0, 0, 1, 2, 2, 2]])
    m.add(t1, np.ones_like(t1, bool), t1)
    m.add(t2, np.ones_like(t2, bool), t2)
    assert m.big_classes() == [0, 2]
    assert m.big_classes(threshold=0.5) == [0]


def test_merge_equals_single_pass_exactly():
    rng = np.random.default_rng(1)
    frames = [(rng.integers(0, 5, (6, 7)), rng.random((6, 7)) > 0.4, rng.integers(0, 6, (6, 7)))
              for _ in range(12)]
    single = CertificationMetrics(5, ignore_index=5)
    for frame in frames:
        single.add(*frame)
    a, b = CertificationMetrics(5, ignore_index=5), CertificationMetrics(5, ignore_index=5)
    for frame in frames[7:]:
        a.add(*frame)
    for frame in frames[:7]:
        b.add(*frame)
    a.merge(b)
    assert a.summary() == single.summary()


def test_bad_inputs_raise():
    m = CertificationMetrics(3, ignore_index=V)
    with pytest.raises(CoreError):
        m.add(np.zeros((2, 2), int), np.ones((2, 3), bool), np.zeros((2, 2), int))
    with pytest.raises(CoreError):
        m.add(np.zeros((2, 2), int), np.ones((2, 2), bool), np.full((2, 2), 4))
    with pytest.raises(CoreError):
        m.add(np.full((2, 2), 3), np.ones((2, 2), bool), np.zeros((2, 2), int))
    with pytest.raises(CoreError):
        CertificationMetrics(3, class_names=["a"])
    with pytest.raises(CoreError):
        m.merge(CertificationMetrics(4, ignore_index=V))
