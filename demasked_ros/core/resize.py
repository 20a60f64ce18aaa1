"""Certifying at a lower working resolution: widen the patch to the resize's footprint.

Masking must happen on the pixels the threat model speaks of. A camera frame may still be resized
*before* masking (to certify a 1920x1080 stream at 480x270, say) if the patch is widened so that it
covers every working-resolution pixel the original patch can influence through the interpolation.

The footprint is measured from the resize operator itself: resizing the identity matrix along one
axis gives the weight of every source pixel in every destination pixel; a destination pixel
depends on a source pixel exactly where that weight is non-zero. The widened patch along the axis
is the longest run of destination pixels a ``P``-pixel source window can reach, over every window
position. Resizing is separable, so the two axes are independent.

The footprint is measured twice and the union taken: on float32 single-channel identity columns
(the exact weights) and on uint8 three-channel impulses, as camera frames are (255 on 0, 0 on 255
and 255 on 128, one per channel). The uint8 path of an accelerated backend (fixed-point weights, a
different kernel) may reach further than the float32 one; frames go through the uint8 path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from demasked_ros.core.errors import CoreError

#: Resizes an array along axis 0 to ``new_rows`` rows, keeping the other axes: float32
#: (rows x columns) and uint8 (rows x columns x 3), as the image resize does.
AxisResize = Callable[[np.ndarray, int], np.ndarray]

#: (background, impulse) per channel of the uint8 probe: bright on dark, dark on bright, bright on grey.
UINT8_IMPULSES = ((0, 255), (255, 0), (128, 255))


def dependency_matrix(source: int, target: int, resize_rows: AxisResize) -> np.ndarray:
    """Boolean ``target x source`` matrix: destination pixel i depends on source pixel j.

    ``resize_rows(array, n)`` must resize an array along its first axis to ``n`` rows with the
    same operator (and interpolation mode) used on images. The result is the union of the float32
    and the uint8 three-channel measurements (see the module docstring).
    """
    weights = np.asarray(resize_rows(np.eye(source, dtype=np.float32), target))
    if weights.shape != (target, source):
        raise CoreError(f"resize returned {weights.shape}, expected {(target, source)}")
    return (np.abs(weights) > 0) | uint8_dependency(source, target, resize_rows)


def uint8_dependency(source: int, target: int, resize_rows: AxisResize) -> np.ndarray:
    """``target x source`` bool: destination i changes when uint8 source pixel j is an impulse.

    Column j of the probe image carries an impulse at row j on a constant background, one
    (background, impulse) pair of :data:`UINT8_IMPULSES` per channel; a destination pixel depends
    on a source pixel where any channel differs from the resized background.
    """
    eye = np.eye(source, dtype=bool)[..., None]
    backgrounds = np.array([b for b, _ in UINT8_IMPULSES], np.uint8)
    impulses = np.array([i for _, i in UINT8_IMPULSES], np.uint8)
    probe = np.where(eye, impulses, backgrounds).astype(np.uint8)
    plain = np.broadcast_to(backgrounds, (source, source, len(UINT8_IMPULSES))).copy()
    moved, still = np.asarray(resize_rows(probe, target)), np.asarray(resize_rows(plain, target))
    expected = (target, source, len(UINT8_IMPULSES))
    if moved.shape != expected or still.shape != expected:
        raise CoreError(f"uint8 resize returned {moved.shape}, expected {expected}")
    return (moved != still).any(axis=2)


def widened_extent(patch: int, source: int, target: int, resize_rows: AxisResize) -> int:
    """Destination pixels a ``patch``-pixel source window can influence, worst case over positions."""
    if not 1 <= patch <= source:
        raise CoreError(f"patch extent {patch} must be in 1..{source}")
    depends = dependency_matrix(source, target, resize_rows)
    # touched[i, a] = destination i depends on some source pixel in the window [a, a + patch).
    cumulative = np.concatenate([np.zeros((target, 1), np.int64), depends.cumsum(axis=1)], axis=1)
    touched = (cumulative[:, patch:] - cumulative[:, :-patch]) > 0
    widest = 0
    for column in touched.T:
        rows = np.flatnonzero(column)
        if rows.size:
            widest = max(widest, int(rows[-1] - rows[0] + 1))
    return min(max(widest, 1), target)


def widened_patch(patch: tuple[int, int], source_hw: tuple[int, int], target_hw: tuple[int, int],
                  resize_rows: AxisResize) -> tuple[int, int]:
    """The working-resolution patch covering every pixel a source ``patch`` can influence."""
    return (
        widened_extent(patch[0], source_hw[0], target_hw[0], resize_rows),
        widened_extent(patch[1], source_hw[1], target_hw[1], resize_rows),
    )


def fit_within(frame_hw: tuple[int, int], max_pixels: int) -> tuple[int, int] | None:
    """The largest size with the frame's aspect ratio and at most ``max_pixels`` pixels.

    None when the frame already fits (certify at the camera size). Each side is at least 1 and
    at most the frame's; the aspect ratio is kept up to rounding of each side down.

    Raises:
        CoreError: a non-positive frame size or pixel budget.
    """
    height, width = frame_hw
    if min(height, width, max_pixels) < 1:
        raise CoreError(f"need a positive frame size and pixel budget, got {frame_hw}, {max_pixels}")
    if height * width <= max_pixels:
        return None
    scale = (max_pixels / (height * width)) ** 0.5
    new_h, new_w = max(1, min(height, int(height * scale))), max(1, min(width, int(width * scale)))
    while new_h * new_w > max_pixels:  # floating-point rounding at the boundary
        if new_h * width >= new_w * height:
            new_h -= 1
        else:
            new_w -= 1
    return new_h, new_w
