"""CudaStreamExecutor: same results as the chunked CPU executor, isolation, determinism, fail closed.

Every test runs on ``cpu`` (streams as no-ops, as in CI) and on ``cuda`` under the ``gpu`` marker.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.engines.certifier import Certifier, StageClock
from demasked_ros.engines.cuda_executor import CudaStreamExecutor, cuda_unavailable_reason
from demasked_ros.engines.demaskers import TeleaDemasker
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.torch_backend import TorchSegmenter
from tests.engines.gpu_devices import DEVICES, engines
from tests.tiny_models import colour_segmenter

HEIGHT, WIDTH = 40, 56


def frame(seed: int = 0) -> np.ndarray:
    from demasked_ros.datasets.procedural import street_scene

    return street_scene(seed, HEIGHT, WIDTH)[0]


def mask_sets():
    return [recovery_masks(HEIGHT, WIDTH, (5, 6), "column"), recovery_masks(HEIGHT, WIDTH, (5, 6), "3-mask"),
            detection_masks(HEIGHT, WIDTH, (5, 6), "column")]




def assert_same(result, reference):
    np.testing.assert_array_equal(result.branch_labels, reference.branch_labels)
    np.testing.assert_array_equal(result.labels, reference.labels)
    np.testing.assert_array_equal(result.certified, reference.certified)
    assert result.certified.dtype == bool and result.mode == reference.mode


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("masks", mask_sets(), ids=lambda m: f"{m.mode}-{m.scheme}")
def test_bit_identical_to_the_chunked_executor_for_every_stream_count(device, masks):
    segmenter, demasker = engines(device)
    image = frame(1)
    reference = Certifier(segmenter, demasker, masks).certify(image)
    for streams, chunk_size in ((1, None), (2, None), (masks.k, None), (2, 1), (3, 2)):
        executor = CudaStreamExecutor(device, streams=streams, chunk_size=chunk_size)
        result = Certifier(segmenter, demasker, masks, executor=executor).certify(image)
        assert_same(result, reference)
        np.testing.assert_array_equal(
            executor.run(image, masks, demasker, segmenter, StageClock()), reference.branch_labels)


@pytest.mark.parametrize("device", DEVICES)
def test_host_engines_run_on_cpu_threads_with_the_same_results(device):
    segmenter, _ = engines(device)
    image = frame(2)
    for masks in mask_sets()[::2]:
        for seg, dem in ((segmenter, TeleaDemasker()), (colour_segmenter(), TeleaDemasker())):
            reference = Certifier(seg, dem, masks).certify(image)
            executor = CudaStreamExecutor(device, streams=2, chunk_size=1)
            assert_same(Certifier(seg, dem, masks, executor=executor).certify(image), reference)


@pytest.mark.parametrize("device", DEVICES)
def test_same_frame_same_outputs_and_masks_uploaded_once(device):
    segmenter, demasker = engines(device)
    masks = mask_sets()[0]
    executor = CudaStreamExecutor(device, streams=2)
    certifier = Certifier(segmenter, demasker, masks, executor=executor)
    first = certifier.certify(frame(3))
    cached = executor._device_masks(masks, StageClock())
    second = certifier.certify(frame(3).copy())
    assert_same(second, first)
    assert executor._device_masks(masks, StageClock()) is cached and len(executor._masks) == 1


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("masks", mask_sets()[::2], ids=lambda m: m.mode)
def test_overwriting_masked_pixels_leaves_each_branch_bit_identical(device, masks):
    segmenter, demasker = engines(device)
    certifier = Certifier(segmenter, demasker, masks, executor=CudaStreamExecutor(device, streams=2))
    image = frame(4)
    reference = certifier.certify(image).branch_labels
    rng = np.random.default_rng(5)
    for branch in range(masks.k):
        tampered = image.copy()
        hidden = ~masks.visible[branch]
        tampered[hidden] = rng.integers(0, 256, size=(int(hidden.sum()), 3), dtype=np.uint8)
        np.testing.assert_array_equal(certifier.certify(tampered).branch_labels[branch], reference[branch])


def fixed_batch_engines(device: str, size: int = 4):
    from demasked_ros.core.classes import CAMVID
    from demasked_ros.engines.torch_backend import TorchDemasker
    from demasked_ros.engines.torch_twins import demasker_module, segmenter_module

    return (TorchSegmenter(segmenter_module(device), CAMVID.names, mean=(0, 0, 0), std=(1, 1, 1),
                           device=device, fixed_batch=size),
            TorchDemasker(demasker_module(device), device=device, max_batch=size, fixed_batch=True))


@pytest.mark.parametrize("device", DEVICES)
def test_fixed_size_network_calls_change_nothing_but_the_call_size(device):
    segmenter, demasker = engines(device)
    fixed_segmenter, fixed_demasker = fixed_batch_engines(device, size=3)
    masks = mask_sets()[2]  # K = 8, S = 2: chunks of 4 = network calls of 3 and 1 + 2 padding images
    reference = Certifier(segmenter, demasker, masks).certify(frame(8))
    executor = CudaStreamExecutor(device, streams=2)
    result = Certifier(fixed_segmenter, fixed_demasker, masks, executor=executor).certify(frame(8))
    assert_same(result, reference)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fixed", [False, True], ids=["as-given", "fixed-batch"])
@pytest.mark.parametrize("seed", [1, 6])
def test_a_branch_alone_equals_the_same_branch_among_random_batch_mates(device, fixed, seed):
    segmenter, demasker = fixed_batch_engines(device) if fixed else engines(device)
    masks = mask_sets()[1]
    visible = torch.from_numpy(np.array(masks.visible)).to(device)
    image = torch.from_numpy(frame(seed)).permute(2, 0, 1).contiguous().to(device)
    alone_in = image[None] * visible[:1, None]
    alone_filled = demasker.demask_tensor(alone_in, visible[:1])
    alone = segmenter.segment_tensor(alone_filled)
    rng = np.random.default_rng(7)
    for size in (2, 5, 7, 8):
        noise = rng.integers(0, 256, (size - 1, 3, HEIGHT, WIDTH), dtype=np.uint8)
        mates = torch.from_numpy(noise).to(device)
        mate_vis = visible[torch.from_numpy(rng.integers(0, masks.k, size - 1)).to(device)]
        batch = torch.cat([mates[: size // 2] * mate_vis[: size // 2, None], alone_in,
                           mates[size // 2:] * mate_vis[size // 2:, None]])
        vis = torch.cat([mate_vis[: size // 2], visible[:1], mate_vis[size // 2:]])
        filled = demasker.demask_tensor(batch, vis)
        assert torch.equal(filled[size // 2], alone_filled[0])  # bit for bit, not just the labels
        labels = segmenter.segment_tensor(filled)
        assert torch.equal(labels[size // 2], alone[0])


class CountingClock(StageClock):
    def __init__(self, cancel_after: int | None = None) -> None:
        super().__init__(threading.Event())
        self.calls, self.cancel_after = 0, cancel_after

    def checkpoint(self) -> None:
        self.calls += 1
        if self.cancel_after is not None and self.calls > self.cancel_after:
            assert self.cancel is not None
            self.cancel.set()
        super().checkpoint()


@pytest.mark.parametrize("device", DEVICES)
def test_checkpoint_before_every_chunk_and_cancellation_fails_closed(device):
    segmenter, demasker = engines(device)
    masks = mask_sets()[2]
    executor = CudaStreamExecutor(device, streams=2, chunk_size=3)
    clock = CountingClock()
    executor.run_aggregated(frame(), masks, demasker, segmenter, clock, masks.n_patches * masks.t)
    assert clock.calls == len(list(executor.chunks(masks.k)))
    with pytest.raises(EngineError, match="cancelled"):
        executor.run_aggregated(frame(), masks, demasker, segmenter, CountingClock(cancel_after=1), 1)


class Exploding:
    device = torch.device("cpu")

    def demask_tensor(self, images, visible):
        raise RuntimeError("boom")

    def demask(self, images, visible):
        raise RuntimeError("boom")


class WrongLabels(torch.nn.Module):
    def forward(self, x):
        return torch.full((x.shape[0], x.shape[2], x.shape[3]), 7, dtype=torch.int64, device=x.device)


def test_failures_fail_closed_with_engine_errors():
    segmenter, demasker = engines("cpu")
    masks = mask_sets()[0]
    image = frame()
    for dem in (Exploding(), type("HostOnly", (), {"demask": Exploding.demask})()):
        with pytest.raises(EngineError, match="boom"):
            Certifier(segmenter, dem, masks, executor=CudaStreamExecutor("cpu")).certify(image)
    bad = TorchSegmenter(WrongLabels(), ["a", "b", "c"], mean=(0, 0, 0), std=(1, 1, 1))
    for masks_ in mask_sets():
        with pytest.raises(EngineError, match="outside its classes"):
            Certifier(bad, demasker, masks_, executor=CudaStreamExecutor("cpu")).certify(image)
    elsewhere = type("Elsewhere", (), {"device": torch.device("meta"), "class_names": ["a"],
                                       "segment_tensor": lambda self, x: x, "segment": lambda self, x: x})()
    with pytest.raises(EngineError, match="executor's device"):
        Certifier(elsewhere, demasker, masks, executor=CudaStreamExecutor("cpu")).certify(image)
    with pytest.raises(EngineError, match="streams"):
        CudaStreamExecutor("cpu", streams=0)
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="CUDA is not available"):
            CudaStreamExecutor("cuda")


def test_certifier_rejects_a_malformed_aggregate():
    segmenter, demasker = engines("cpu")
    masks = mask_sets()[0]

    class Lying(CudaStreamExecutor):
        def run_aggregated(self, *args, **kwargs):
            out = super().run_aggregated(*args, **kwargs)
            out.certified = out.certified.astype(np.uint8)
            return out

    with pytest.raises(EngineError, match="certificate"):
        Certifier(segmenter, demasker, masks, executor=Lying("cpu")).certify(frame())


def test_describe_reports_executor_device_and_streams():
    info = CudaStreamExecutor("cpu", streams=3).describe()
    assert info["executor"] == "cuda-streams" and info["device"] == "cpu" and info["streams"] == "3"


@pytest.mark.parametrize("device", DEVICES)
def test_unavailable_reason_names_what_keeps_an_executor_off_the_gpu(device):
    segmenter, demasker = engines(device)
    if device == "cpu":
        reason = cuda_unavailable_reason(segmenter, demasker)
        assert reason is not None and ("CUDA" in reason or "runs on cpu" in reason)
    else:
        assert cuda_unavailable_reason(segmenter, demasker, device) is None
        assert "tensor path" in str(cuda_unavailable_reason(colour_segmenter(), TeleaDemasker(), device))
        cpu_segmenter = engines("cpu")[0]
        assert "runs on cpu" in str(cuda_unavailable_reason(cpu_segmenter, None, device))
