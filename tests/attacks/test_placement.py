"""Threat-model placement: patches lie inside the frame, grids reach the edges, paste stays inside."""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.attacks.errors import AttackError
from demasked_ros.attacks.placement import (
    Placement,
    grid_placements,
    paste,
    random_placement,
    resolve_patch,
    worst_of,
)


def test_random_placements_lie_inside_the_frame():
    rng = np.random.default_rng(0)
    for _ in range(200):
        placement = random_placement(rng, 37, 53, (7, 11), n_patches=2)
        assert len(placement.boxes) == 2
        for y, x, h, w in placement.boxes:
            assert (h, w) == (7, 11) and 0 <= y <= 30 and 0 <= x <= 42


def test_grid_covers_every_pixel_including_the_edges():
    placements = grid_placements(37, 53, (7, 11), stride=5)
    covered = np.zeros((37, 53), dtype=bool)
    for placement in placements:
        covered |= placement.region(37, 53)
    assert covered.all()
    assert any(p.boxes[0][:2] == (30, 42) for p in placements)


def test_paste_changes_only_the_patch_pixels():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    placement = Placement(((3, 4, 5, 6), (10, 20, 5, 6)))
    out = paste(image, placement, [np.full((5, 6, 3), 7, np.uint8)] * 2)
    changed = (out != image).any(axis=2)
    assert not (changed & ~placement.region(20, 30)).any()
    assert (out[3:8, 4:10] == 7).all() and (out[10:15, 20:26] == 7).all()
    with pytest.raises(AttackError):
        paste(image, Placement(((17, 0, 5, 6),)), [np.zeros((5, 6, 3), np.uint8)])


def test_worst_of_picks_the_highest_score_and_patch_resolution():
    candidates = grid_placements(20, 20, (5, 5))
    best, score = worst_of(candidates, lambda p: -abs(p.boxes[0][0] - 10) - abs(p.boxes[0][1] - 5))
    assert best.boxes[0][:2] == (10, 5) and score == 0
    assert resolve_patch(360, 480, 0.01) == (42, 42)
    with pytest.raises(AttackError):
        resolve_patch(10, 10, (11, 2))
