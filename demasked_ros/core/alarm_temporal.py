"""Temporal persistence for the patch alarm (beyond the paper; empirical, not certified).

A patch placed in the scene stays (nearly) where it was between consecutive video frames, and it
keeps leaving its coherent branch disagreement there. Most clean-frame artefacts of the demasker
(the heavy tail that keeps the single-frame threshold high, see docs/ATTACKS.md) come and go with
the content that happens to fall under a mask. So the *persistent score* of a frame is, for every
candidate patch position, the mean of the position's score over the last ``window`` frames (each
frame's scores first max-pooled over ``spread`` grid steps, so a slowly moving patch still counts),
maximised over positions. Frames that are not there yet (the first ``window - 1`` after a start or
a gap) count as 0, so a persistent alarm never fires on fewer frames than its window.

The persistent threshold is calibrated on clean *video-rate* sequences, like the single-frame one
on clean frames: persistence only means something at the frame rate it was calibrated for, hence
``max_gap``: a longer gap between frames (dropped frames, a paused bag) or time going backwards
restarts the history.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from demasked_ros.core.errors import CoreError


@dataclass(frozen=True)
class TemporalParams:
    """How the persistent score is formed.

    Attributes:
        window: frames averaged (>= 2; 1 would be the single-frame score).
        spread: grid steps (half a patch side each) a patch may move from one frame to the next.
        max_gap: seconds between frames beyond which the history restarts.
    """

    window: int = 3
    spread: int = 1
    max_gap: float = 0.25

    def __post_init__(self) -> None:
        if self.window < 2 or self.spread < 0 or not self.max_gap > 0:
            raise CoreError(f"temporal alarm needs window >= 2, spread >= 0 and max_gap > 0, got {self}")


def spread_max(scores: np.ndarray, grid_shape: tuple[int, int], spread: int) -> np.ndarray:
    """Each position's score replaced by the largest within ``spread`` grid steps (a square
    neighbourhood on the candidate grid); ``scores`` is flat, in the grid's row-major order."""
    rows, cols = grid_shape
    if scores.shape != (rows * cols,):
        raise CoreError(f"{scores.shape[0]} position scores do not fill a {rows}x{cols} grid")
    grid = scores.reshape(rows, cols)
    if spread == 0:
        return grid.reshape(-1).copy()
    padded = np.pad(grid, spread, mode="constant", constant_values=-np.inf)
    pooled = np.full_like(grid, -np.inf)
    for dy in range(2 * spread + 1):
        for dx in range(2 * spread + 1):
            np.maximum(pooled, padded[dy:dy + rows, dx:dx + cols], out=pooled)
    return pooled.reshape(-1)


class TemporalState:
    """The persistent score of a stream, one frame at a time (frames must arrive in order).

    Thread-safe: the node's watchdog may :meth:`reset` it while the worker thread updates it.
    """

    def __init__(self, grid_shape: tuple[int, int], params: TemporalParams | None = None) -> None:
        self.grid_shape = grid_shape
        self.params = params or TemporalParams()
        self._history: deque[np.ndarray] = deque(maxlen=self.params.window)
        self._last_stamp: float | None = None
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget the history (after a failed frame, a gap, or a new stream)."""
        with self._lock:
            self._history.clear()
            self._last_stamp = None

    def update(self, position_scores: np.ndarray, stamp: float | None = None) -> tuple[float, int]:
        """Add one frame's position scores; returns ``(persistent score, best position index)``.

        ``stamp`` (seconds) restarts the history when it is more than ``max_gap`` after the last
        frame's or not after it; without stamps the frames are taken as consecutive.
        """
        scores = np.asarray(position_scores, dtype=np.float64)
        pooled = spread_max(scores, self.grid_shape, self.params.spread)
        with self._lock:
            if stamp is not None and self._last_stamp is not None and \
                    not 0.0 < stamp - self._last_stamp <= self.params.max_gap:
                self._history.clear()
            self._last_stamp = stamp
            self._history.append(pooled)
            mean = np.sum(self._history, axis=0) / self.params.window
        best = int(np.argmax(mean))
        return float(mean[best]), best


def persistent_scores(sequence: Sequence[np.ndarray], grid_shape: tuple[int, int],
                      params: TemporalParams | None = None,
                      stamps: Sequence[float] | None = None) -> np.ndarray:
    """The persistent score of every frame of one ordered sequence of position scores (what
    calibration and the attack study use; the node runs :class:`TemporalState` live)."""
    state = TemporalState(grid_shape, params)
    if stamps is not None and len(stamps) != len(sequence):
        raise CoreError(f"{len(stamps)} stamps for {len(sequence)} frames")
    return np.array([state.update(scores, None if stamps is None else stamps[i])[0]
                     for i, scores in enumerate(sequence)], dtype=np.float64)


@dataclass(frozen=True)
class TemporalCalibration:
    """The persistent-score threshold for one setup, calibrated on clean video-rate sequences."""

    threshold: float
    false_alarm_rate: float
    frames: int
    params: TemporalParams
    data: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "params": asdict(self.params)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TemporalCalibration:
        """Inverse of :meth:`to_json`; CoreError when malformed."""
        try:
            return cls(threshold=float(data["threshold"]), false_alarm_rate=float(data["false_alarm_rate"]),
                       frames=int(data["frames"]), params=TemporalParams(**data.get("params", {})),
                       data=str(data.get("data", "")))
        except (KeyError, TypeError, ValueError) as error:
            raise CoreError(f"bad temporal alarm calibration: {error}") from error
