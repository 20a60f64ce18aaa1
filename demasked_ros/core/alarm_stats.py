"""Calibration and ROC maths of the patch alarm: pure functions on score lists (no geometry).

Kept apart from :mod:`demasked_ros.core.alarm` so the single-frame and the persistent (temporal)
scores are calibrated and studied by the same few lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from demasked_ros.core.errors import CoreError


def calibrate_threshold(clean_scores: Sequence[float], false_alarm_rate: float) -> float:
    """The smallest threshold whose alarm (``score > threshold``) fires on at most
    ``floor(rate * n)`` of the ``n`` clean scores.

    With ties at the threshold nothing tied alarms, so the empirical rate on the calibration
    frames never exceeds the requested one (it can be lower).
    """
    scores = np.sort(np.asarray(clean_scores, dtype=np.float64))
    if scores.size == 0 or not np.isfinite(scores).all():
        raise CoreError("calibration needs at least one finite clean score")
    if not 0.0 <= false_alarm_rate < 1.0:
        raise CoreError(f"false-alarm rate must be in [0, 1), got {false_alarm_rate}")
    allowed = math.floor(false_alarm_rate * scores.size + 1e-9)
    return float(scores[scores.size - allowed - 1])


def alarm_rate(scores: Sequence[float], threshold: float) -> float:
    """Fraction of ``scores`` strictly above ``threshold``."""
    values = np.asarray(scores, dtype=np.float64)
    return float((values > threshold).mean()) if values.size else float("nan")


def roc_auc(negative: Sequence[float], positive: Sequence[float]) -> float:
    """Area under the ROC curve (Mann-Whitney U; ties count one half)."""
    neg, pos = np.asarray(negative, np.float64), np.asarray(positive, np.float64)
    if neg.size == 0 or pos.size == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (neg.size * pos.size))


def roc_curve(negative: Sequence[float], positive: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates for every threshold (alarm = score > threshold), from (1, 1)."""
    neg, pos = np.asarray(negative, np.float64), np.asarray(positive, np.float64)
    thresholds = np.unique(np.concatenate([neg, pos, [-np.inf]]))[::-1]
    fpr = np.array([(neg > t).mean() if neg.size else 0.0 for t in thresholds])
    tpr = np.array([(pos > t).mean() if pos.size else 0.0 for t in thresholds])
    return fpr, tpr


def calibrate_joint_threshold(persistent_scores: Sequence[float] | np.ndarray,
                              already_alarmed: Sequence[bool] | np.ndarray, false_alarm_rate: float) -> float:
    """The smallest threshold on a second score (the persistent one) such that the frames alarmed by
    either rule (``already_alarmed`` by the first, or second score above the threshold) are at most
    ``floor(rate * n)`` of the ``n`` clean frames.

    When the first rule alone already uses up the allowance, the threshold is the largest second
    score (the second rule then adds no clean alarm; the excess is the first rule's).
    """
    scores = np.asarray(persistent_scores, dtype=np.float64)
    first = np.asarray(already_alarmed, dtype=bool)
    if scores.size == 0 or scores.shape != first.shape or not np.isfinite(scores).all():
        raise CoreError("joint calibration needs one finite score and one flag per clean frame")
    if not 0.0 <= false_alarm_rate < 1.0:
        raise CoreError(f"false-alarm rate must be in [0, 1), got {false_alarm_rate}")
    rest = np.sort(scores[~first])
    allowed = math.floor(false_alarm_rate * scores.size + 1e-9) - int(first.sum())
    if rest.size == 0 or allowed <= 0:
        return float(scores.max())
    return float(rest[rest.size - allowed - 1])
