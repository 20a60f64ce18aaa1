"""Segmenter factories the node under test loads through its ``segmenter_plugin`` parameter."""

from __future__ import annotations

import time

import numpy as np

from demasked_ros.engines.segmenters import CallableSegmenter
from tests.tiny_models import CLASS_NAMES, colour_rule

#: A frame filled with this colour makes :func:`poison_segmenter` raise (fail-closed tests).
POISON = (251, 7, 251)


def colour_segmenter() -> CallableSegmenter:
    """The deterministic, pixel-local colour rule of tests.tiny_models."""
    return CallableSegmenter(colour_rule, CLASS_NAMES)


def _poisoned(images: np.ndarray) -> np.ndarray:
    hits = np.all(images == np.array(POISON, np.uint8), axis=-1).mean(axis=(1, 2))
    if (hits > 0.01).any():
        raise RuntimeError("poisoned frame: simulated model crash")
    return colour_rule(images)


def poison_segmenter() -> CallableSegmenter:
    """The colour rule, except that it raises on frames mostly of the :data:`POISON` colour."""
    return CallableSegmenter(_poisoned, CLASS_NAMES)


def _slow(images: np.ndarray) -> np.ndarray:
    time.sleep(0.1)
    return colour_rule(images)


def slow_segmenter() -> CallableSegmenter:
    """The colour rule plus 100 ms per batch: slower than a 30 Hz camera."""
    return CallableSegmenter(_slow, CLASS_NAMES)


def _wide(images: np.ndarray) -> np.ndarray:
    return colour_rule(images) * 90  # labels 0, 90, 180, 270: beyond mono8


def wide_segmenter() -> CallableSegmenter:
    """The colour rule on a 300-class label set (labels up to 270), so labels go out as mono16."""
    return CallableSegmenter(_wide, [f"class_{index}" for index in range(300)])
