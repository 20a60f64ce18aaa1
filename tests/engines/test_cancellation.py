"""Contract 1: a cancelled frame stops within one chunk and fails closed with an EngineError."""

import threading

import numpy as np
import pytest

from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.engines.certifier import Certifier, StageClock
from demasked_ros.engines.demaskers import SolidFillDemasker
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.segmenters import CallableSegmenter
from tests.tiny_models import CLASS_NAMES, colour_rule


def frame():
    return np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)


def test_checkpoint_raises_only_once_cancelled():
    event = threading.Event()
    clock = StageClock(event)
    clock.checkpoint()
    StageClock().checkpoint()
    event.set()
    with pytest.raises(EngineError, match="cancelled"):
        clock.checkpoint()


@pytest.mark.parametrize("chunk", [1, 2])
def test_cancel_during_a_chunk_stops_before_the_next_one(chunk):
    masks = recovery_masks(48, 64, (6, 8), "4-mask")  # K = 9
    event = threading.Event()
    calls = []

    def cancelling(images):
        calls.append(len(images))
        if len(calls) == 2:
            event.set()  # the watchdog fires while the second chunk runs
        return colour_rule(images)

    certifier = Certifier(CallableSegmenter(cancelling, CLASS_NAMES), SolidFillDemasker(), masks,
                          chunk_size=chunk)
    with pytest.raises(EngineError, match="cancelled"):
        certifier.certify(frame(), cancel=event)
    assert len(calls) == 2  # the chunk in progress finished, no further chunk started
    assert sum(calls) < masks.k


def test_an_already_cancelled_frame_runs_no_branch_and_uncancelled_frames_are_unaffected():
    masks = detection_masks(48, 64, (6, 8), "column")
    calls = []

    def counting(images):
        calls.append(len(images))
        return colour_rule(images)

    certifier = Certifier(CallableSegmenter(counting, CLASS_NAMES), SolidFillDemasker(), masks)
    event = threading.Event()
    event.set()
    with pytest.raises(EngineError, match="cancelled"):
        certifier.certify(frame(), cancel=event)
    assert calls == []
    result = certifier.certify(frame(), cancel=threading.Event())
    assert result.branch_labels.shape == (masks.k, 48, 64)
    np.testing.assert_array_equal(result.branch_labels, certifier.certify(frame()).branch_labels)
