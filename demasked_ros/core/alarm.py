"""A calibrated patch alarm from the branch disagreement structure (beyond the paper; empirical).

The per-pixel certificate says *where* the output can be trusted; it cannot say whether a frame is
being attacked (clean frames always have uncertified pixels along class boundaries). A patch,
however, leaves a structure that boundary noise does not: it isolates a small, geometrically fixed
group of branches from the rest.

* Detection: the branches whose hidden bands cover the patch (the *hiding* group) never see it, so
  where the patch changed f(x) they all disagree with f(x) together while the others follow f(x).
* Recovery: only the branches whose visible blocks touch the patch (the *seeing* group, at most T)
  see it; where it changed them they disagree with the vote together while the others agree.

For every candidate patch position on a grid the score counts the pixels near the patch that show
exactly that group's coherent disagreement, after an opening removes thin class-boundary bands;
the frame score is the maximum over positions (in units of the patch area), and the argmax is the
most likely patch. The threshold is calibrated on clean frames to a chosen false-alarm rate.

This alarm is **empirical, not certified**: an adaptive attacker can try to stay below the
threshold. The per-pixel certificate is computed independently and is unchanged by it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demasked_ros.core.alarm_stats import alarm_rate, calibrate_threshold, roc_auc, roc_curve
from demasked_ros.core.alarm_temporal import TemporalCalibration, TemporalState
from demasked_ros.core.errors import CoreError
from demasked_ros.core.geometry import window_sums
from demasked_ros.core.masks import MaskSet

CALIBRATION_VERSION = 1
__all__ = ["AlarmCalibration", "AlarmGeometry", "AlarmOutcome", "AlarmParams", "PatchAlarm", "PatchEvidence",
           "alarm_rate", "calibrate_threshold", "calibration_key", "load_calibrations", "patch_evidence",
           "roc_auc", "roc_curve", "save_calibrations"]


@dataclass(frozen=True)
class AlarmParams:
    """Tunable parts of the score (stored with every calibration, so a threshold keeps its meaning).

    Attributes:
        open_radius: opening radius in pixels; structures thinner than ``2 r + 1`` (class-boundary
            bands) are removed before counting.
        tolerance: branches outside the group that may also disagree at an evidence pixel.
        reach: evidence is counted within ``reach`` patch sides around a candidate patch.
        stride: candidate grid stride in pixels (None: half the shorter patch side).
        visible_only: count only pixels every group member can see. Off by default: measured on
            CamVid, a PGD patch changes f(x) mostly inside the band that hides it.
    """

    open_radius: int = 2
    tolerance: int = 1
    reach: float = 1.0
    stride: int | None = None
    visible_only: bool = False

    def __post_init__(self) -> None:
        if self.open_radius < 0 or self.tolerance < 0 or self.reach < 0:
            raise CoreError(f"alarm parameters must be non-negative, got {self}")
        if self.stride is not None and self.stride < 1:
            raise CoreError(f"alarm stride must be >= 1, got {self.stride}")


@dataclass(frozen=True)
class PatchEvidence:
    """The alarm's view of one frame.

    Attributes:
        score: coherent-disagreement area near the most likely patch, in patch areas (>= 0).
        roi: ``(y, x, height, width)`` of the most likely patch; None when there is no evidence.
        group: indices of the branches that patch isolates.
        evidence: H x W bool map of the evidence pixels of that group (for display).
        positions: the score of every candidate position (the geometry's order), for the
            persistent (temporal) score.
    """

    score: float
    roi: tuple[int, int, int, int] | None
    group: tuple[int, ...]
    evidence: np.ndarray | None = field(default=None, repr=False, compare=False)
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)


class AlarmGeometry:
    """Candidate patch positions and the branch group each one isolates, for one mask set.

    Built once per mask set (it depends on geometry only, never on image content).
    """

    def __init__(self, masks: MaskSet, params: AlarmParams | None = None) -> None:
        self.masks, self.params = masks, params or AlarmParams()
        ph, pw = masks.patch
        stride = self.params.stride or max(1, min(ph, pw) // 2)
        ys = _grid(masks.height - ph, stride)
        xs = _grid(masks.width - pw, stride)
        self.positions = np.array([(y, x) for y in ys for x in xs], dtype=np.int64)
        self.grid_shape = (len(ys), len(xs))  # positions are this grid, row-major
        touched = np.stack([window_sums(plane, (ph, pw))[self.positions[:, 0], self.positions[:, 1]] > 0
                            for plane in masks.visible], axis=1)  # positions x K: branch sees patch
        groups = ~touched if masks.mode == "detection" else touched
        unique, self.group_of = np.unique(groups, axis=0, return_inverse=True)
        self.group_of = self.group_of.reshape(-1)
        self.groups = [np.flatnonzero(row) for row in unique]
        self.visible_only = bool(self.params.visible_only)


def _grid(extent: int, stride: int) -> list[int]:
    """Positions 0, stride, ... up to ``extent`` inclusive, always including ``extent``."""
    values = list(range(0, extent + 1, stride))
    if values[-1] != extent:
        values.append(extent)
    return values


def opening(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary opening by a ``(2 r + 1)`` square: removes structures thinner than the square.

    Outside the frame counts as False. Separable shifts of boolean planes (fast enough for the node).
    """
    mask = mask.astype(bool)
    if radius <= 0:
        return mask
    eroded = _shifted(_shifted(mask, radius, 0, np.logical_and), radius, 1, np.logical_and)
    return _shifted(_shifted(eroded, radius, 0, np.logical_or), radius, 1, np.logical_or)


def _shifted(plane: np.ndarray, radius: int, axis: int, combine: np.ufunc) -> np.ndarray:
    """``combine`` of ``plane`` shifted by -r..r along ``axis`` (zero padding): 1-D erosion/dilation."""
    padded = np.pad(plane, [(radius, radius) if a == axis else (0, 0) for a in range(2)])
    size = plane.shape[axis]

    def window(offset: int) -> np.ndarray:
        return padded[offset:offset + size] if axis == 0 else padded[:, offset:offset + size]

    out = window(0).copy()
    for offset in range(1, 2 * radius + 1):
        combine(out, window(offset), out=out)
    return out


def box_sums(integral: np.ndarray, top: np.ndarray, left: np.ndarray, bottom: np.ndarray,
             right: np.ndarray) -> np.ndarray:
    """Sums over boxes ``[top, bottom) x [left, right)`` from an integral image (H+1 x W+1)."""
    return integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]


def integral_image(plane: np.ndarray) -> np.ndarray:
    """(H+1) x (W+1) int32 integral image of a 2-D (boolean / small integer) array."""
    out = np.zeros((plane.shape[0] + 1, plane.shape[1] + 1), dtype=np.int32)
    np.cumsum(np.cumsum(plane, axis=0, dtype=np.int32), axis=1, out=out[1:, 1:])
    return out


def group_evidence(disagree: np.ndarray, count: np.ndarray, group: np.ndarray,
                   visible: np.ndarray | None, tolerance: int, radius: int) -> np.ndarray:
    """Pixels where every branch of ``group`` disagrees with the output (``disagree``: K x H x W)
    and at most ``tolerance`` others do (``count``: disagreeing branches per pixel); with
    ``visible`` (K x H x W), only pixels every group member can see count. Opened."""
    together = np.all(disagree[group], axis=0)
    if visible is not None:
        together &= np.all(visible[group], axis=0)
    candidate = together & (count - len(group) <= tolerance)
    if np.count_nonzero(candidate) < (2 * radius + 1) ** 2:
        return np.zeros_like(candidate)  # too few pixels to survive the opening
    return opening(candidate, radius)


def patch_evidence(branch_labels: np.ndarray, output: np.ndarray, geometry: AlarmGeometry,
                   keep_map: bool = False) -> PatchEvidence:
    """Score one frame: the largest coherent-disagreement area near any candidate patch.

    Args:
        branch_labels: K x H x W branch labels of the frame.
        output: H x W output labels (recovery: the vote; detection: f(x)).
        geometry: the mask set's :class:`AlarmGeometry`.
        keep_map: also return the evidence map of the winning group.
    """
    masks = geometry.masks
    if branch_labels.shape != masks.visible.shape or output.shape != branch_labels.shape[1:]:
        raise CoreError(f"branch labels {branch_labels.shape} / output {output.shape} do not match the "
                        f"masks {masks.visible.shape}")
    ph, pw = masks.patch
    reach_h, reach_w = round(geometry.params.reach * ph), round(geometry.params.reach * pw)
    top = np.clip(geometry.positions[:, 0] - reach_h, 0, masks.height)
    left = np.clip(geometry.positions[:, 1] - reach_w, 0, masks.width)
    bottom = np.clip(geometry.positions[:, 0] + ph + reach_h, 0, masks.height)
    right = np.clip(geometry.positions[:, 1] + pw + reach_w, 0, masks.width)
    scores = np.zeros(len(geometry.positions), dtype=np.int64)
    maps: dict[int, np.ndarray] = {}
    disagree = branch_labels != output[None]
    count = disagree.sum(axis=0)
    disagreeing = disagree.any(axis=(1, 2))
    for index, group in enumerate(geometry.groups):
        if len(group) == 0 or not disagreeing[group].all():
            continue  # a group member agrees everywhere: no evidence for this group
        evidence = group_evidence(disagree, count, group,
                                  masks.visible if geometry.visible_only else None,
                                  geometry.params.tolerance, geometry.params.open_radius)
        if not evidence.any():
            continue
        at = geometry.group_of == index
        scores[at] = box_sums(integral_image(evidence), top[at], left[at], bottom[at], right[at])
        if keep_map:
            maps[index] = evidence
    best = int(np.argmax(scores))
    per_position = scores / float(ph * pw)
    if scores[best] == 0:
        return PatchEvidence(0.0, None, (), positions=per_position)
    y, x = (int(v) for v in geometry.positions[best])
    group_index = int(geometry.group_of[best])
    return PatchEvidence(float(per_position[best]), (y, x, ph, pw),
                         tuple(int(g) for g in geometry.groups[group_index]), maps.get(group_index),
                         per_position)


@dataclass(frozen=True)
class AlarmCalibration:
    """A threshold calibrated for one certification setup (mode, scheme, patch, image size, models).

    ``key`` identifies the setup (:func:`calibration_key`); ``data`` says which frames were used;
    ``temporal``, when present, is the persistent-score threshold (calibrated on clean video);
    ``models_sha256`` fingerprints the model files it was made with (role -> SHA-256 or name), so a
    retrained model is not silently judged by its predecessor's threshold (:meth:`made_for`).
    """

    key: str
    threshold: float
    false_alarm_rate: float
    frames: int
    params: AlarmParams
    data: str = ""
    measured: dict[str, Any] = field(default_factory=dict)
    temporal: TemporalCalibration | None = None
    models_sha256: dict[str, str] = field(default_factory=dict)

    def made_for(self, fingerprint: dict[str, str]) -> bool:
        """True unless the entry records a model (role) that differs from, or is absent in,
        ``fingerprint``; entries from before fingerprints were recorded match anything."""
        return all(fingerprint.get(role) == digest for role, digest in self.models_sha256.items())

    def alarmed(self, score: float) -> bool:
        """True when ``score`` is above the calibrated threshold."""
        return score > self.threshold

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (no ``temporal`` key without a temporal calibration)."""
        document = {**asdict(self), "params": asdict(self.params)}
        document.pop("temporal")
        if self.temporal is not None:
            document["temporal"] = self.temporal.to_json()
        return document

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlarmCalibration:
        """Inverse of :meth:`to_json`."""
        try:
            return cls(key=str(data["key"]), threshold=float(data["threshold"]),
                       false_alarm_rate=float(data["false_alarm_rate"]), frames=int(data["frames"]),
                       params=AlarmParams(**data.get("params", {})), data=str(data.get("data", "")),
                       measured=dict(data.get("measured", {})),
                       temporal=(TemporalCalibration.from_json(data["temporal"]) if data.get("temporal")
                                 else None),
                       models_sha256={str(k): str(v) for k, v in data.get("models_sha256", {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CoreError(f"bad alarm calibration entry: {error}") from error


def calibration_key(masks: MaskSet, models: str = "default") -> str:
    """``detection-column-42x42-360x480-k11-default``: what a threshold is valid for."""
    return (f"{masks.mode}-{masks.scheme}-{masks.patch[0]}x{masks.patch[1]}-{masks.height}x{masks.width}"
            f"-k{masks.k}-{models}")


def save_calibrations(path: Path, calibrations: Sequence[AlarmCalibration]) -> None:
    """Write (or merge into) a calibration file: ``{"version": 1, "calibrations": {key: entry}}``."""
    existing = load_calibrations(path) if path.is_file() else {}
    existing.update({c.key: c for c in calibrations})
    document = {"version": CALIBRATION_VERSION,
                "calibrations": {key: c.to_json() for key, c in sorted(existing.items())}}
    path.write_text(json.dumps(document, indent=2) + "\n")


def load_calibrations(path: Path) -> dict[str, AlarmCalibration]:
    """Read a calibration file; CoreError when it is missing or malformed."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CoreError(f"cannot read alarm calibration {path}: {error}") from error
    if not isinstance(document, dict) or document.get("version") != CALIBRATION_VERSION:
        raise CoreError(f"{path} is not a version-{CALIBRATION_VERSION} alarm calibration file")
    return {key: AlarmCalibration.from_json(entry) for key, entry in document["calibrations"].items()}


@dataclass(frozen=True)
class AlarmOutcome:
    """What the node publishes about the alarm: the score, the suspected patch, and the decision.

    ``alarmed`` is None when no calibration matches the setup (no calibrated decision possible);
    else it is true when the single-frame score or the persistent score (``persistent_score``, 0
    without a temporal calibration) is above its threshold.
    """

    score: float
    roi: tuple[int, int, int, int] | None
    alarmed: bool | None
    persistent_score: float = 0.0


class PatchAlarm:
    """The alarm for one mask set: geometry built once, threshold from a matching calibration.

    With a temporal calibration it also keeps the stream's persistent score, so frames must be
    evaluated in order (the node certifies one frame at a time); :meth:`reset` after a failure.
    """

    def __init__(self, masks: MaskSet, calibration: AlarmCalibration | None = None) -> None:
        self.calibration = calibration
        self.geometry = AlarmGeometry(masks, calibration.params if calibration else None)
        temporal = calibration.temporal if calibration else None
        self.temporal = None if temporal is None else TemporalState(self.geometry.grid_shape, temporal.params)

    def reset(self) -> None:
        """Forget the persistent score's history (a failed frame breaks the chain)."""
        if self.temporal is not None:
            self.temporal.reset()

    @classmethod
    def from_calibrations(cls, masks: MaskSet, calibrations: dict[str, AlarmCalibration],
                          models: str = "default") -> PatchAlarm:
        """The alarm with the calibration for ``calibration_key(masks, models)``, if there is one."""
        return cls(masks, calibrations.get(calibration_key(masks, models)))

    def evaluate(self, branch_labels: np.ndarray, output: np.ndarray,
                 stamp: float | None = None) -> AlarmOutcome:
        """Score one frame (branch labels and output at the masks' size; ``stamp`` in seconds,
        for the persistent score's gap rule)."""
        evidence = patch_evidence(branch_labels, output, self.geometry)
        if self.calibration is None:
            return AlarmOutcome(evidence.score, evidence.roi, None)
        alarmed = self.calibration.alarmed(evidence.score)
        persistent = 0.0
        temporal = self.calibration.temporal
        if self.temporal is not None and temporal is not None:
            persistent, best = self.temporal.update(evidence.positions, stamp)
            if persistent > temporal.threshold and not alarmed:
                alarmed = True
                y, x = (int(v) for v in self.geometry.positions[best])
                return AlarmOutcome(evidence.score, (y, x, *self.geometry.masks.patch), True, persistent)
        return AlarmOutcome(evidence.score, evidence.roi, alarmed, persistent)
