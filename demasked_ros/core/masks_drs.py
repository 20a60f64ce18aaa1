"""Column smoothing masks of (de)randomized smoothing, for the paper's DRS-S baseline (appendix G).

Each mask keeps one vertical band of ``band_width`` columns visible (wrapping around the right
edge) and hides the rest; consecutive bands start ``stride`` columns apart, so K = ceil(W / stride).
A patch can touch the visible band of several masks; T is computed exactly over every patch
column position, and the vote must then win by a margin of more than 2*T
(:func:`demasked_ros.core.certify.recover_with_margin`), as in Levine & Feizi (2020).
"""

from __future__ import annotations

import math

import numpy as np

from demasked_ros.core.errors import CoreError
from demasked_ros.core.masks import MaskSet
from demasked_ros.core.threat import PatchSpec, patch_shape


def drs_column_masks(height: int, width: int, patch: PatchSpec, band_width: int, stride: int) -> MaskSet:
    """Column-smoothing masks: one visible band of ``band_width`` columns per mask.

    Args:
        band_width: visible columns per mask (the paper scales Salman et al.'s b=19 on 224 px
            ImageNet to b=42 for ADE20K).
        stride: offset between the bands of consecutive masks (s=22 for ADE20K).
    """
    ph, pw = patch_shape(height, width, patch)
    if not 1 <= band_width <= width:
        raise CoreError(f"band width must be in 1..{width}, got {band_width}")
    if not 1 <= stride <= width:
        raise CoreError(f"stride must be in 1..{width}, got {stride}")
    k = math.ceil(width / stride)
    visible_columns = np.zeros((k, width), dtype=bool)
    for index in range(k):
        visible_columns[index, (index * stride + np.arange(band_width)) % width] = True
    # T: the most masks whose visible band a patch of pw columns can touch, over every position.
    touched = np.zeros(width - pw + 1, dtype=np.int64)
    for row in visible_columns:
        hits = np.concatenate(([0], np.cumsum(row)))
        touched += (hits[pw:] - hits[:-pw]) > 0
    t = int(touched.max())
    visible = np.broadcast_to(visible_columns[:, None, :], (k, height, width)).copy()
    return MaskSet(visible=visible, t=t, mode="recovery", patch=(ph, pw), scheme="drs-column")


def drs_parameters_for_width(width: int) -> tuple[int, int]:
    """Band width and stride scaled from the paper's ADE20K choice (b=42, s=22 at 512 px)."""
    scale = width / 512
    return max(1, round(42 * scale)), max(1, round(22 * scale))
