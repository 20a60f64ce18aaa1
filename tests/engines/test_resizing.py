"""Resizing before masking is sound only with the widened patch: check it on real pixels."""

import numpy as np
import pytest

from demasked_ros.core.masks import recovery_masks
from demasked_ros.core.resize import widened_extent
from demasked_ros.engines.resizing import INTERPOLATIONS, FrameResizer, cv2_axis_resize


def changed_rows(base, patched):
    rows = np.flatnonzero((base != patched).reshape(base.shape[0], -1).any(axis=1))
    return (int(rows[0]), int(rows[-1])) if rows.size else None


@pytest.mark.parametrize("interpolation", sorted(INTERPOLATIONS))
@pytest.mark.parametrize(("source", "target", "patch"), [
    (1080, 270, 30), (360, 180, 30), (100, 37, 7), (77, 50, 10), (50, 77, 10), (360, 360, 30),
])
def test_every_patch_position_changes_only_a_widened_window(interpolation, source, target, patch):
    flag = INTERPOLATIONS[interpolation]
    width = widened_extent(patch, source, target, cv2_axis_resize(flag))
    rng = np.random.default_rng(0)
    base_src = rng.integers(0, 256, size=(source, 4, 3), dtype=np.uint8)
    resizer = FrameResizer((source, 4), (target, 4), interpolation)
    base = resizer.resize(base_src)
    reached = 0
    for start in range(source - patch + 1):
        for fill in (0, 255):
            attacked = base_src.copy()
            attacked[start:start + patch] = fill
            span = changed_rows(base, resizer.resize(attacked))
            if span:
                assert span[1] - span[0] + 1 <= width, f"patch at {start} reached {span}"
                reached = max(reached, span[1] - span[0] + 1)
    assert reached >= 1
    assert width <= max(reached + 2, 1) or interpolation == "nearest"


def test_two_dimensional_frames_and_certificate_transfer():
    resizer = FrameResizer((60, 80), (30, 40), "area")
    ph, pw = resizer.patch((7, 9))
    assert (ph, pw) == (4, 5)  # 2:1 area averaging: 7 px reach 4 output rows, 9 px reach 5
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    base = resizer.resize(frame)
    for r in range(0, 60 - 7 + 1):
        for c in range(0, 80 - 9 + 1, 3):
            attacked = frame.copy()
            attacked[r:r + 7, c:c + 9] = 255 - attacked[r:r + 7, c:c + 9]
            diff = np.argwhere((resizer.resize(attacked) != base).any(axis=2))
            if diff.size:
                assert np.ptp(diff[:, 0]) + 1 <= ph and np.ptp(diff[:, 1]) + 1 <= pw
    # the masks at the working size are built for the widened patch and pass the exhaustive check
    masks = recovery_masks(30, 40, (ph, pw), "column")
    assert masks.patch == (4, 5)
    assert resizer.upscale_labels(np.ones((30, 40), np.uint8)).shape == (60, 80)
