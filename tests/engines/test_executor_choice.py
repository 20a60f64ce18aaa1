"""Choosing the branch executor: the CUDA stream executor where torch sees a GPU and the engines
run there, the chunked CPU executor with a warning and a reason otherwise. Tested on the CPU up to
the device boundary (the "GPU" is stood in for by ``cpu:0``; the code path is the same)."""

from __future__ import annotations

import pytest
import torch

from demasked_ros.engines import defaults, factory
from demasked_ros.engines.cuda_executor import CudaStreamExecutor
from demasked_ros.engines.errors import EngineError


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")
def test_gpu_device_is_cpu_with_a_reason_without_cuda():
    assert factory.gpu_device("cpu") == ("cpu", None)
    device, reason = factory.gpu_device("auto")
    assert device == "cpu" and reason is not None and "CUDA" in reason
    with pytest.raises(EngineError, match="unknown executor"):
        factory.gpu_device("tpu")


def test_auto_does_not_import_torch_without_a_gpu_driver(monkeypatch):
    monkeypatch.setattr(factory, "_torch_imported", lambda: False)
    monkeypatch.setattr(factory, "_gpu_driver_present", lambda: False)
    assert factory.gpu_device("auto") == ("cpu", "no NVIDIA GPU driver found")
    if not torch.cuda.is_available():  # an explicit cuda request always asks torch
        assert "CUDA" in str(factory.gpu_device("cuda")[1])


def test_stream_executor_is_chosen_where_the_engines_run(monkeypatch, warning_log):
    monkeypatch.setattr(factory, "gpu_device", lambda name: ("cpu", None))  # stand-in for a usable GPU
    segmenter = defaults.default_segmenter(backend="torch", device="cpu", threads=1)
    demasker = defaults.default_demasker(backend="torch", device="cpu", threads=1)
    log = warning_log
    executor, name = factory.make_executor("cuda", None, log, segmenter=segmenter, demasker=demasker,
                                           streams=3)
    assert isinstance(executor, CudaStreamExecutor) and executor.streams == 3 and not log.lines
    assert name.startswith("cuda-streams")
    assert factory.executor_info(executor) == {"executor": "cuda-streams", "device": "cpu", "streams": "3",
                                               "chunk_size": "K/S"}
    # a classical demasker is fine (CPU threads); a segmenter without a tensor path is not
    assert isinstance(factory.make_executor("auto", None, log, segmenter, factory.make_demasker("telea"))[0],
                      CudaStreamExecutor)
    onnx = defaults.default_segmenter(threads=1)
    executor, name = factory.make_executor("cuda", 2, log, segmenter=onnx, demasker=demasker)
    assert executor is None and "tensor path" in name and name.startswith("cpu-chunked(chunk_size=2)")
    assert len(log.lines) == 1 and "falling back to the CPU executor" in log.lines[0]
    executor, _ = factory.make_executor("auto", None, log, segmenter=onnx, demasker=demasker)
    assert executor is None and len(log.lines) == 1  # auto falls back quietly
    assert factory.executor_info(None) == {"executor": "cpu-chunked", "device": "cpu", "streams": "0"}


def test_device_builds_the_torch_twins_and_cpu_the_onnx_models():
    spec = factory.SegmenterSpec(device="cpu:0", threads=1)
    twin = factory.make_segmenter(spec)
    assert callable(getattr(twin, "segment_tensor", None)) and twin.device == torch.device("cpu")
    assert not hasattr(factory.make_segmenter(factory.SegmenterSpec(threads=1)), "segment_tensor")
    demasker = factory.make_demasker("default", threads=1, device="cpu:0")
    assert callable(getattr(demasker, "demask_tensor", None))
    assert not hasattr(factory.make_demasker("telea", device="cpu:0"), "demask_tensor")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_auto_runs_the_twins_on_cuda_streams(warning_log):
    device, reason = factory.gpu_device("auto")
    assert (device, reason) == ("cuda", None)
    segmenter = factory.make_segmenter(factory.SegmenterSpec(device=device, threads=1))
    demasker = factory.make_demasker("default", threads=1, device=device)
    executor, _ = factory.make_executor("auto", None, warning_log, segmenter=segmenter, demasker=demasker)
    assert isinstance(executor, CudaStreamExecutor) and executor.device.type == "cuda"
    assert factory.executor_info(executor)["device"].startswith("cuda")
