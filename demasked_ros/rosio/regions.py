"""Alert regions: bounding boxes of the connected uncertified areas a planner should avoid trusting.

Small specks of disagreement along class boundaries are common and not actionable, so only
connected components (8-connectivity) of at least ``min_area`` pixels are reported, largest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AlertRegion:
    """An axis-aligned box around one connected uncertified region (input-resolution pixels)."""

    x: int
    y: int
    width: int
    height: int
    area: int


def alert_regions(uncertified: np.ndarray, min_area: int,
                  max_regions: int | None = None) -> list[AlertRegion]:
    """Boxes of the connected ``uncertified`` (bool H x W) components with at least ``min_area`` pixels.

    Sorted by area, largest first (ties: top-left first); at most ``max_regions`` when given.
    """
    if uncertified.ndim != 2:
        raise ValueError(f"uncertified map must be H x W, got shape {uncertified.shape}")
    if min_area < 1:
        raise ValueError(f"min_area must be >= 1, got {min_area}")
    if not uncertified.any():
        return []
    count, _, stats, _ = cv2.connectedComponentsWithStats(uncertified.astype(np.uint8), connectivity=8)
    regions = [
        AlertRegion(x=int(s[cv2.CC_STAT_LEFT]), y=int(s[cv2.CC_STAT_TOP]), width=int(s[cv2.CC_STAT_WIDTH]),
                    height=int(s[cv2.CC_STAT_HEIGHT]), area=int(s[cv2.CC_STAT_AREA]))
        for s in stats[1:count] if s[cv2.CC_STAT_AREA] >= min_area
    ]
    regions.sort(key=lambda r: (-r.area, r.y, r.x))
    return regions if max_regions is None else regions[:max_regions]
