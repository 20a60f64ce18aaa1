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


def _slow_poisoned(images: np.ndarray) -> np.ndarray:
    time.sleep(0.1)
    return _poisoned(images)


def slow_poison_segmenter() -> CallableSegmenter:
    """:func:`slow_segmenter` that also raises on :data:`POISON` frames, like :func:`poison_segmenter`."""
    return CallableSegmenter(_slow_poisoned, CLASS_NAMES)


def _wide(images: np.ndarray) -> np.ndarray:
    return colour_rule(images) * 90  # labels 0, 90, 180, 270: beyond mono8


def wide_segmenter() -> CallableSegmenter:
    """The colour rule on a 300-class label set (labels up to 270), so labels go out as mono16."""
    return CallableSegmenter(_wide, [f"class_{index}" for index in range(300)])


#: Frames containing this colour make :func:`marked_slow_segmenter` slow.
SLOW_MARK = (255, 0, 255)
#: File :func:`marked_slow_segmenter` appends one line to per call on a marked frame.
CALLS_ENV = "DEMASKED_TEST_CALLS"


def _marked_slow(images: np.ndarray) -> np.ndarray:
    import os

    if (images == np.array(SLOW_MARK, np.uint8)).all(axis=-1).any():
        with open(os.environ[CALLS_ENV], "a") as handle:
            handle.write(f"{len(images)}\n")
        time.sleep(0.6)
    return colour_rule(images)


def marked_slow_segmenter() -> CallableSegmenter:
    """The colour rule, 0.6 s per batch (and a line in $DEMASKED_TEST_CALLS) on marked frames."""
    return CallableSegmenter(_marked_slow, CLASS_NAMES)


def _batch_normalised(images: np.ndarray) -> np.ndarray:
    centred = images.astype(np.int32) - images.mean(axis=(0, 1, 2), keepdims=True).astype(np.int32) + 128
    return colour_rule(np.clip(centred, 0, 255).astype(np.uint8))


def batch_normalised_segmenter() -> CallableSegmenter:
    """The colour rule after subtracting the *batch* mean colour: labels depend on batch-mates."""
    return CallableSegmenter(_batch_normalised, CLASS_NAMES)
