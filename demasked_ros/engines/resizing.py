"""Resize a frame *before* masking, soundly: OpenCV resizing with a widened patch.

Use when the camera's resolution is much higher than the resolution worth certifying at. The
patch is widened (see :mod:`demasked_ros.core.resize`) so that the certificate at the working
resolution still holds for the original patch size on the original frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from demasked_ros.core.resize import AxisResize, widened_patch
from demasked_ros.engines.errors import EngineError

INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


def cv2_axis_resize(interpolation: int) -> AxisResize:
    """``resize_rows`` for :func:`demasked_ros.core.resize.widened_patch` using ``cv2.resize``."""

    def resize_rows(array: np.ndarray, rows: int) -> np.ndarray:
        return np.asarray(cv2.resize(array, (array.shape[1], rows), interpolation=interpolation))

    return resize_rows


class FrameResizer:
    """Resizes frames from ``source_hw`` to ``target_hw`` and widens patches to match.

    Args:
        source_hw: camera frame size (height, width).
        target_hw: working size the masks and models run at.
        interpolation: ``"area"`` (default, best for downscaling), ``"linear"`` or ``"nearest"``.
    """

    def __init__(self, source_hw: tuple[int, int], target_hw: tuple[int, int],
                 interpolation: str = "area") -> None:
        if interpolation not in INTERPOLATIONS:
            raise EngineError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
        if min(*source_hw, *target_hw) < 1:
            raise EngineError(f"sizes must be positive, got {source_hw} -> {target_hw}")
        self.source_hw = (int(source_hw[0]), int(source_hw[1]))
        self.target_hw = (int(target_hw[0]), int(target_hw[1]))
        self.interpolation = INTERPOLATIONS[interpolation]

    def resize(self, image: np.ndarray) -> np.ndarray:
        """The frame at the working size (H x W x C uint8 in, same channels out)."""
        if image.shape[:2] != self.source_hw:
            raise EngineError(f"frame is {image.shape[:2]}, resizer expects {self.source_hw}")
        height, width = self.target_hw
        return np.asarray(cv2.resize(image, (width, height), interpolation=self.interpolation))

    def patch(self, patch: tuple[int, int]) -> tuple[int, int]:
        """The working-resolution patch covering everything a source ``patch`` can influence."""
        return widened_patch(patch, self.source_hw, self.target_hw, cv2_axis_resize(self.interpolation))

    def upscale_labels(self, labels: np.ndarray) -> np.ndarray:
        """Working-resolution labels or certificate back at the camera size (nearest neighbour)."""
        height, width = self.source_hw
        return np.asarray(cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST))
