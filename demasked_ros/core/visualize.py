"""Colour images of labels and certificates, shared by the CLI, the node and the evaluator reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from demasked_ros.core.errors import CoreError

#: Colour of pixels outside the palette (e.g. void labels): black.
UNKNOWN_COLOR = (0, 0, 0)
#: Colour marking uncertified pixels in overlays (magenta stands out in driving scenes).
UNCERTIFIED_COLOR = (255, 0, 255)


def colorize(labels: np.ndarray, colors: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """RGB image (H x W x 3 uint8) of a label map; labels outside the palette are black."""
    if labels.ndim != 2:
        raise CoreError(f"labels must be H x W, got shape {labels.shape}")
    palette = np.array([*colors, UNKNOWN_COLOR], dtype=np.uint8)
    index = labels.astype(np.int64)
    index = np.where((index >= 0) & (index < len(colors)), index, len(colors))
    return palette[index]


def certification_image(certified: np.ndarray) -> np.ndarray:
    """mono8 certificate: 255 where certified (verified), 0 elsewhere."""
    return np.where(certified, 255, 0).astype(np.uint8)


def overlay(image: np.ndarray, labels: np.ndarray, certified: np.ndarray,
            colors: Sequence[tuple[int, int, int]], alpha: float = 0.5,
            stripe_period: int = 8) -> np.ndarray:
    """Blend the label colours over ``image`` and hatch uncertified pixels.

    Certified pixels show ``alpha``-blended class colours; uncertified pixels are drawn with
    diagonal magenta stripes over a darkened image, so they stay visible in RViz at a glance.
    """
    if image.shape[:2] != labels.shape or labels.shape != certified.shape or image.ndim != 3:
        raise CoreError(
            f"image {image.shape}, labels {labels.shape} and certificate {certified.shape} do not match"
        )
    if not 0.0 <= alpha <= 1.0:
        raise CoreError(f"alpha must be in [0, 1], got {alpha}")
    base = image[..., :3].astype(np.float32)
    blended = (1 - alpha) * base + alpha * colorize(labels, colors).astype(np.float32)
    rows, cols = np.indices(labels.shape)
    stripe = ((rows + cols) // max(1, stripe_period // 2)) % 2 == 0
    marked = np.where(stripe[..., None], np.array(UNCERTIFIED_COLOR, np.float32), 0.35 * base)
    out = np.where(certified[..., None], blended, marked)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
