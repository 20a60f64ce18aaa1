"""Exhaustive checks of mask geometry: every patch position, no sampling.

These are the guarantees Theorems 1 and 2 rest on. They are cheap (one integral image per mask),
so the engine re-checks every mask set it is given before certifying anything with it.
"""

from __future__ import annotations

import numpy as np

from demasked_ros.core.errors import CoreError
from demasked_ros.core.masks import MaskSet


def window_sums(plane: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """Sum of ``plane`` over every ``window``-sized rectangle lying fully inside it.

    Returns an array of shape ``(H - wh + 1, W - ww + 1)``; entry ``(i, j)`` is the sum over rows
    ``i .. i+wh-1`` and columns ``j .. j+ww-1``.
    """
    wh, ww = window
    integral = np.zeros((plane.shape[0] + 1, plane.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = plane.astype(np.int64).cumsum(axis=0).cumsum(axis=1)
    return integral[wh:, ww:] - integral[:-wh, ww:] - integral[wh:, :-ww] + integral[:-wh, :-ww]


def masks_affected_per_position(masks: MaskSet) -> np.ndarray:
    """Number of masks whose visible pixels a patch at each position would touch.

    A mask is *affected* by a patch when the patch overlaps at least one of its visible pixels
    (section 4.1). Shape: ``(H - ph + 1, W - pw + 1)``.
    """
    counts = np.zeros((masks.height - masks.patch[0] + 1, masks.width - masks.patch[1] + 1), np.int32)
    for plane in masks.visible:
        counts += window_sums(plane, masks.patch) > 0
    return counts


def hiding_masks_per_position(masks: MaskSet) -> np.ndarray:
    """Number of masks that hide a patch at each position completely (no visible pixel under it)."""
    counts = np.zeros((masks.height - masks.patch[0] + 1, masks.width - masks.patch[1] + 1), np.int32)
    for plane in masks.visible:
        counts += window_sums(plane, masks.patch) == 0
    return counts


def verify_masks(masks: MaskSet) -> None:
    """Raise :class:`CoreError` unless ``masks`` provably supports its certificate.

    Recovery: ``K >= 2*N*T + 1`` and no patch position affects more than ``T`` masks.
    Detection: every patch position is completely hidden by at least one mask.
    """
    if masks.mode == "recovery":
        minimum_k = 2 * masks.n_patches * masks.t + 1
        if masks.k < minimum_k:
            raise CoreError(f"{masks.describe()}: K must be >= 2*N*T+1 = {minimum_k}")
        worst = int(masks_affected_per_position(masks).max())
        if worst > masks.t:
            raise CoreError(f"{masks.describe()}: a patch can affect {worst} masks, more than T")
    elif masks.mode == "detection":
        uncovered = np.argwhere(hiding_masks_per_position(masks) == 0)
        if len(uncovered):
            row, col = (int(v) for v in uncovered[0])
            raise CoreError(
                f"{masks.describe()}: {len(uncovered)} patch positions are hidden by no mask, "
                f"e.g. the patch at row {row}, column {col}"
            )
    else:
        raise CoreError(f"unknown mask mode {masks.mode!r}")
