"""Colour images of labels and certificates, shared by the CLI, the node and the evaluator reports."""

from __future__ import annotations

import functools
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
    outside = (labels < 0) | (labels >= len(colors))
    index = np.where(outside, len(colors), labels) if outside.any() else labels
    return palette.take(index, axis=0)


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
    # Integer maths throughout (about 5x faster than float32 at 480x360).
    weight = round(alpha * 256)
    base = image[..., :3].astype(np.uint16)
    colors_img = colorize(labels, colors).astype(np.uint16)
    blended = ((256 - weight) * base + weight * colors_img + 128) >> 8
    darkened = (base * 90 + 128) >> 8  # about 35 % brightness under the hatching
    out = blended.astype(np.uint8)
    uncertified = ~certified
    stripe = _stripes(labels.shape, stripe_period)
    out[uncertified] = darkened[uncertified]
    out[uncertified & stripe] = UNCERTIFIED_COLOR
    return out


@functools.lru_cache(maxsize=8)
def _stripes(shape: tuple[int, ...], period: int) -> np.ndarray:
    """Diagonal stripe pattern (True on the stripes) of the given H x W shape."""
    half = max(1, period // 2)
    rows = np.arange(shape[0])[:, None]
    cols = np.arange(shape[1])[None, :]
    stripes = ((rows + cols) // half) % 2 == 0
    stripes.setflags(write=False)  # cached and shared between calls
    return stripes
