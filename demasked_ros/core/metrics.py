"""Evaluation metrics of section 5.2, as pure functions plus a streaming accumulator.

Definitions (void / ignore-index pixels are excluded everywhere):

* **mIoU**: mean over classes of TP / (TP + FP + FN), accumulated over the dataset; classes that
  neither occur nor are predicted are left out of the mean.
* **mR**: mean over classes of the total recall TR_y = sum TP_y / sum P_y.
* **cmR**: mean over classes of the certified total recall cTR_y = sum cTP_y / sum P_y, where cTP
  counts pixels that are certified (verified) *and* correctly classified. Classes absent from the
  ground truth of the whole dataset are left out of both means.
* **%C**: per frame, the fraction of pixels that are certified and correct; averaged over frames.
* **FAR** (detection): per frame, the fraction of correctly classified pixels that carry an alert
  (are not verified) on the clean input; averaged over frames that have a correct pixel.
* **big classes**: classes covering on average more than 20 % of the frames they appear in
  (appendix H); big mR / big cmR restrict the means to them.

Per-frame ratios are kept as exact integer pairs and averaged with ``math.fsum``, so merging
accumulators (workers, Ray) gives results identical to a single pass, in any order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from demasked_ros.core.errors import CoreError


def confusion_matrix(prediction: np.ndarray, truth: np.ndarray, num_classes: int,
                     valid: np.ndarray) -> np.ndarray:
    """``num_classes x num_classes`` counts, rows = ground truth, columns = prediction."""
    index = truth[valid].astype(np.int64) * num_classes + prediction[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU per class from a confusion matrix; NaN where the class is neither true nor predicted."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def recall_per_class(hits: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """hits / positives per class; NaN for classes with no ground-truth pixel."""
    hits = np.asarray(hits, dtype=np.float64)
    positives = np.asarray(positives, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, hits / np.maximum(positives, 1), np.nan)


def mean_of_ratios(pairs: Sequence[tuple[int, int]]) -> float:
    """Exact-order-independent mean of numerator/denominator pairs, skipping zero denominators."""
    ratios = [num / den for num, den in pairs if den > 0]
    return math.fsum(ratios) / len(ratios) if ratios else float("nan")


def nan_mean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


class CertificationMetrics:
    """Streaming accumulator of the paper's metrics; add one frame at a time.

    Args:
        num_classes: number of real classes (labels ``0 .. num_classes-1``).
        ignore_index: ground-truth label of void pixels, excluded from every metric.
        class_names: optional names for :meth:`per_class`.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 class_names: Sequence[str] | None = None) -> None:
        if num_classes < 1:
            raise CoreError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise CoreError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_names = list(class_names) if class_names is not None else [
            f"class_{i}" for i in range(num_classes)]
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.certified_hits = np.zeros(num_classes, dtype=np.int64)
        self.frame_certified: list[tuple[int, int]] = []
        self.frame_false_alerts: list[tuple[int, int]] = []
        self.class_share_sum: list[list[tuple[int, int]]] = [[] for _ in range(num_classes)]

    @property
    def frames(self) -> int:
        """Number of frames added so far."""
        return len(self.frame_certified)

    def add(self, prediction: np.ndarray, certified: np.ndarray, ground_truth: np.ndarray) -> dict[str, Any]:
        """Add one frame: the output labels, its certification (verification) map and the truth.

        Returns the frame's own statistics (``pct_certified``, ``accuracy``, ``far`` in 0-100,
        NaN where undefined) for per-frame logs.
        """
        stats = frame_statistics(prediction, certified, ground_truth, self.num_classes,
                                 self.ignore_index)
        self.add_statistics(stats)
        return summarise_frame(stats)

    def add_statistics(self, stats: dict[str, Any]) -> None:
        """Add a frame's sufficient statistics (from :func:`frame_statistics`), e.g. on resume."""
        self.confusion += np.asarray(stats["confusion"], dtype=np.int64)
        self.certified_hits += np.asarray(stats["certified_hits"], dtype=np.int64)
        self.frame_certified.append((int(stats["certified_correct"]), int(stats["valid"])))
        self.frame_false_alerts.append((int(stats["alerted_correct"]), int(stats["correct"])))
        for cls, pixels in enumerate(np.asarray(stats["class_pixels"]).tolist()):
            if pixels > 0:
                self.class_share_sum[cls].append((int(pixels), int(stats["valid"])))

    def merge(self, other: CertificationMetrics) -> None:
        """Fold another accumulator (e.g. from a worker) into this one; exact and order-free."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise CoreError("cannot merge metrics over different label sets")
        self.confusion += other.confusion
        self.certified_hits += other.certified_hits
        self.frame_certified.extend(other.frame_certified)
        self.frame_false_alerts.extend(other.frame_false_alerts)
        for mine, theirs in zip(self.class_share_sum, other.class_share_sum, strict=True):
            mine.extend(theirs)

    def big_classes(self, threshold: float = 0.2) -> list[int]:
        """Classes covering on average more than ``threshold`` of the frames they appear in."""
        return [cls for cls, shares in enumerate(self.class_share_sum)
                if shares and mean_of_ratios(shares) > threshold]

    def summary(self, big_classes: Sequence[int] | None = None) -> dict[str, Any]:
        """All metrics; percentages in 0-100. ``big_classes`` defaults to :meth:`big_classes`."""
        positives = self.confusion.sum(axis=1)
        recall = recall_per_class(np.diag(self.confusion), positives)
        certified_recall = recall_per_class(self.certified_hits, positives)
        big = list(self.big_classes()) if big_classes is None else [int(c) for c in big_classes]
        return {
            "mIoU": 100 * nan_mean(iou_per_class(self.confusion)),
            "mR": 100 * nan_mean(recall),
            "cmR": 100 * nan_mean(certified_recall),
            "big_mR": 100 * nan_mean(recall[big]) if big else float("nan"),
            "big_cmR": 100 * nan_mean(certified_recall[big]) if big else float("nan"),
            "pct_certified": 100 * mean_of_ratios(self.frame_certified),
            "FAR": 100 * mean_of_ratios(self.frame_false_alerts),
            "accuracy": 100 * float(np.trace(self.confusion)) / max(int(self.confusion.sum()), 1),
            "big_classes": big,
            "frames": self.frames,
        }

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: IoU, recall, certified recall (0-100), pixel count, mean share."""
        positives = self.confusion.sum(axis=1)
        iou = iou_per_class(self.confusion)
        recall = recall_per_class(np.diag(self.confusion), positives)
        certified_recall = recall_per_class(self.certified_hits, positives)
        return [
            {
                "class": cls,
                "name": self.class_names[cls],
                "IoU": 100 * float(iou[cls]),
                "recall": 100 * float(recall[cls]),
                "certified_recall": 100 * float(certified_recall[cls]),
                "pixels": int(positives[cls]),
                "frames_present": len(self.class_share_sum[cls]),
                "mean_share": 100 * mean_of_ratios(self.class_share_sum[cls]),
            }
            for cls in range(self.num_classes)
        ]


def frame_statistics(prediction: np.ndarray, certified: np.ndarray, ground_truth: np.ndarray,
                     num_classes: int, ignore_index: int) -> dict[str, Any]:
    """Sufficient statistics of one frame (JSON-serialisable after ``.tolist()``)."""
    if not (prediction.shape == certified.shape == ground_truth.shape) or prediction.ndim != 2:
        raise CoreError(
            f"prediction {prediction.shape}, certification {certified.shape} and ground truth "
            f"{ground_truth.shape} must be equal H x W shapes"
        )
    valid = ground_truth != ignore_index
    truth_range = ground_truth[valid]
    if truth_range.size and (truth_range.min() < 0 or truth_range.max() >= num_classes):
        raise CoreError(f"ground truth holds labels outside 0..{num_classes - 1} and the ignore index")
    predicted = prediction[valid]
    if predicted.size and (predicted.min() < 0 or predicted.max() >= num_classes):
        raise CoreError(f"prediction holds labels outside 0..{num_classes - 1}")
    certified = certified.astype(bool)
    correct = valid & (prediction == ground_truth)
    certified_correct = correct & certified
    return {
        "confusion": confusion_matrix(prediction, ground_truth, num_classes, valid),
        "certified_hits": np.bincount(ground_truth[certified_correct].astype(np.int64),
                                      minlength=num_classes),
        "class_pixels": np.bincount(truth_range.astype(np.int64), minlength=num_classes),
        "valid": int(valid.sum()),
        "correct": int(correct.sum()),
        "certified_correct": int(certified_correct.sum()),
        "alerted_correct": int((correct & ~certified).sum()),
    }


def summarise_frame(stats: dict[str, Any]) -> dict[str, float]:
    """Per-frame %C, accuracy and FAR (0-100; NaN where the frame has no valid / correct pixel)."""
    valid, correct = int(stats["valid"]), int(stats["correct"])
    return {
        "pct_certified": 100 * stats["certified_correct"] / valid if valid else float("nan"),
        "accuracy": 100 * correct / valid if valid else float("nan"),
        "far": 100 * stats["alerted_correct"] / correct if correct else float("nan"),
    }
