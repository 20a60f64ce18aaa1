"""Meaningful alert regions: thin boundary bands removed, oversized components split into grid cells."""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.rosio.regions import alert_regions


def _boundary_web(height: int = 120, width: int = 160) -> np.ndarray:
    """Thin 2-pixel class-boundary lines that connect across the whole frame, plus one real blob."""
    mask = np.zeros((height, width), dtype=bool)
    mask[::20, :] = mask[1::20, :] = True
    mask[:, ::25] = mask[:, 1::25] = True
    mask[50:70, 60:90] = True
    return mask


def test_opening_removes_the_boundary_web_and_keeps_the_blob():
    mask = _boundary_web()
    (frame_sized,) = alert_regions(mask, min_area=10, max_regions=1)
    assert frame_sized.width * frame_sized.height > 0.9 * mask.size  # the old behaviour
    (blob,) = alert_regions(mask, min_area=10, open_radius=2)
    assert (blob.x, blob.y, blob.width, blob.height) == (60, 50, 30, 20)


def test_oversized_components_become_grid_cells_never_one_frame_box():
    mask = np.zeros((120, 160), dtype=bool)
    mask[10:110, 10:150] = True  # one compact component covering most of the frame
    regions = alert_regions(mask, min_area=10, max_box_fraction=0.25, grid=(4, 4))
    assert len(regions) == 16
    assert all(r.width * r.height <= 0.25 * mask.size / 4 + 1 for r in regions)
    assert max(r.area for r in regions) == 30 * 40
    small = np.zeros((120, 160), dtype=bool)
    small[5:15, 5:15] = True
    assert alert_regions(small, 1, max_box_fraction=0.25)[0].area == 100
    with pytest.raises(ValueError):
        alert_regions(mask, 1, open_radius=-1)
