"""Staging a frame ahead of its certification (pipelining): same results, no lock, fail closed.

Runs on ``cpu`` (as in CI) and on ``cuda`` under the ``gpu`` marker.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.engines.certifier import Certifier, PreparedImage, StageClock
from demasked_ros.engines.cuda_executor import CudaStreamExecutor
from demasked_ros.engines.demaskers import TeleaDemasker
from demasked_ros.engines.device_staging import StagedFrame, stage_frame
from demasked_ros.engines.errors import EngineError
from tests.engines.gpu_devices import DEVICES, engines
from tests.tiny_models import colour_segmenter

HEIGHT, WIDTH = 40, 56


def frame(seed: int) -> np.ndarray:
    from demasked_ros.datasets.procedural import street_scene

    return street_scene(seed, HEIGHT, WIDTH)[0]


def same(result, reference) -> None:
    np.testing.assert_array_equal(result.branch_labels, reference.branch_labels)
    np.testing.assert_array_equal(result.labels, reference.labels)
    np.testing.assert_array_equal(result.certified, reference.certified)


MASKS = [recovery_masks(HEIGHT, WIDTH, (5, 6), "column"), detection_masks(HEIGHT, WIDTH, (5, 6), "column")]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("masks", MASKS, ids=lambda m: m.mode)
def test_a_staged_frame_certifies_bit_identically_to_the_image(device, masks):
    segmenter, demasker = engines(device)
    executor = CudaStreamExecutor(device, streams=2)
    certifier = Certifier(segmenter, demasker, masks, executor=executor)
    for seed in (1, 2):
        image = frame(seed)
        reference = Certifier(segmenter, demasker, masks).certify(image)
        prepared = certifier.prepare(image)
        assert isinstance(prepared.staged, StagedFrame) and prepared.executor is executor
        np.testing.assert_array_equal(prepared.staged.image, image)
        assert not prepared.staged.image.flags.writeable
        same(certifier.certify(prepared), reference)
        staged = executor.prepare(image)
        np.testing.assert_array_equal(executor.run(staged, masks, demasker, segmenter, StageClock()),
                                      reference.branch_labels)
    # Staged frames of two frames in flight at once each keep their own pixels.
    first, second = certifier.prepare(frame(3)), certifier.prepare(frame(4))
    same(certifier.certify(second), Certifier(segmenter, demasker, masks).certify(frame(4)))
    same(certifier.certify(first), Certifier(segmenter, demasker, masks).certify(frame(3)))


@pytest.mark.parametrize("device", DEVICES)
def test_staging_does_not_wait_for_the_frame_that_runs(device):
    executor = CudaStreamExecutor(device, streams=2)
    done = threading.Event()
    with executor._lock:  # as while another frame's branches run
        thread = threading.Thread(target=lambda: (executor.prepare(frame(5)), done.set()))
        thread.start()
        assert done.wait(10.0), "prepare must not take the executor's frame lock"
    thread.join(10.0)


def test_executors_without_staging_and_foreign_handles_use_the_image():
    masks = MASKS[0]
    segmenter, demasker = colour_segmenter(), TeleaDemasker()
    image = frame(6)
    reference = Certifier(segmenter, demasker, masks).certify(image)
    chunked = Certifier(segmenter, demasker, masks)
    prepared = chunked.prepare(image)
    assert prepared == PreparedImage(image) and prepared.staged is None
    same(chunked.certify(prepared), reference)
    # A handle staged by another executor is never given to this one: the image is used instead.
    other = Certifier(segmenter, demasker, masks, executor=CudaStreamExecutor("cpu"))
    foreign = PreparedImage(image, staged=object(), executor=object())
    same(other.certify(foreign), reference)
    with pytest.raises(EngineError, match="frame must be"):
        chunked.prepare(image[:-1])


def test_staging_failures_are_engine_errors():
    executor = CudaStreamExecutor("cpu")
    with pytest.raises(EngineError, match="H x W x 3 uint8"):
        executor.prepare(np.zeros((HEIGHT, WIDTH), np.uint8))
    segmenter, demasker = engines("cpu")
    staged = stage_frame(frame(7), torch.device("cpu"), None)
    elsewhere = StagedFrame(staged.image, staged.tensor, torch.device("meta"), None)
    with pytest.raises(EngineError, match="staged on meta"):
        executor.run_aggregated(elsewhere, MASKS[0], demasker, segmenter, StageClock(), 2)

    class Broken(CudaStreamExecutor):
        def prepare(self, image):
            raise RuntimeError("pinned memory exhausted")

    certifier = Certifier(segmenter, demasker, MASKS[0], executor=Broken("cpu"))
    with pytest.raises(EngineError, match="staging the frame failed: RuntimeError"):
        certifier.prepare(frame(7))
