"""Alert regions: boxes around the uncertified areas a planner should avoid trusting.

Raw uncertified maps are dominated by thin bands along class boundaries that connect into one
frame-sized component, so a single box around them tells a planner nothing. Two steps keep the boxes
meaningful:

1. an opening by a ``(2 r + 1)`` square removes structures thinner than that (the boundary bands);
2. connected components (8-connectivity) of at least ``min_area`` pixels become boxes, and a component
   whose box would cover more than ``max_box_fraction`` of the frame is reported instead as the cells
   of a coarse grid that it fills to at least ``cell_fill``.

So no box is ever larger than a grid cell unless the component is compact enough to fit the limit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AlertRegion:
    """An axis-aligned box around one uncertified region (input-resolution pixels)."""

    x: int
    y: int
    width: int
    height: int
    area: int


def alert_regions(uncertified: np.ndarray, min_area: int, max_regions: int | None = None,
                  open_radius: int = 0, max_box_fraction: float = 1.0,
                  grid: tuple[int, int] = (6, 8), cell_fill: float = 0.25) -> list[AlertRegion]:
    """Boxes of the ``uncertified`` (bool H x W) regions, largest area first (ties: top-left first).

    Args:
        min_area: smallest component (after the opening) reported, in pixels.
        max_regions: at most this many boxes.
        open_radius: opening radius ``r`` (0: no opening).
        max_box_fraction: components with a larger box are split into grid cells (1.0: never).
        grid: ``(rows, columns)`` of the coarse grid used for splitting.
        cell_fill: fraction of a cell a split component must cover for the cell to be reported.
    """
    if uncertified.ndim != 2:
        raise ValueError(f"uncertified map must be H x W, got shape {uncertified.shape}")
    if min_area < 1:
        raise ValueError(f"min_area must be >= 1, got {min_area}")
    if open_radius < 0 or not 0.0 < max_box_fraction <= 1.0 or min(grid) < 1 or not 0.0 < cell_fill <= 1.0:
        raise ValueError("bad region parameters: open_radius >= 0, max_box_fraction in (0, 1], "
                         "grid >= 1x1, cell_fill in (0, 1]")
    mask = uncertified.astype(np.uint8)
    if open_radius > 0:
        kernel = np.ones((2 * open_radius + 1, 2 * open_radius + 1), np.uint8)
        mask = np.asarray(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_CONSTANT,
                                           borderValue=0), dtype=np.uint8)
    if not mask.any():
        return []
    height, width = mask.shape
    count, component, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    regions: list[AlertRegion] = []
    for label in range(1, count):
        s = stats[label]
        if s[cv2.CC_STAT_AREA] < min_area:
            continue
        box_area = int(s[cv2.CC_STAT_WIDTH]) * int(s[cv2.CC_STAT_HEIGHT])
        if box_area > max_box_fraction * height * width:
            regions += _grid_cells(component == label, grid, cell_fill)
        else:
            regions.append(AlertRegion(x=int(s[cv2.CC_STAT_LEFT]), y=int(s[cv2.CC_STAT_TOP]),
                                       width=int(s[cv2.CC_STAT_WIDTH]), height=int(s[cv2.CC_STAT_HEIGHT]),
                                       area=int(s[cv2.CC_STAT_AREA])))
    regions.sort(key=lambda r: (-r.area, r.y, r.x))
    return regions if max_regions is None else regions[:max_regions]


def _grid_cells(component: np.ndarray, grid: tuple[int, int], cell_fill: float) -> list[AlertRegion]:
    """The cells of a ``grid`` that ``component`` covers to at least ``cell_fill``."""
    height, width = component.shape
    rows = np.linspace(0, height, grid[0] + 1).round().astype(int)
    cols = np.linspace(0, width, grid[1] + 1).round().astype(int)
    cells = []
    for top, bottom in itertools.pairwise(rows):
        for left, right in itertools.pairwise(cols):
            area = int(component[top:bottom, left:right].sum())
            if bottom > top and right > left and area >= cell_fill * (bottom - top) * (right - left):
                cells.append(AlertRegion(x=int(left), y=int(top), width=int(right - left),
                                         height=int(bottom - top), area=area))
    return cells
