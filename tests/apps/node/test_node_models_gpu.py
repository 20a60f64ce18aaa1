"""The node's model loading with executor cuda/auto: torch twins + CudaStreamExecutor where a GPU
is usable, the CPU executor with the reason otherwise; diagnostics name executor, device, streams.
Runs on the CPU up to the device boundary (``cpu:0`` stands in for the GPU device string)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from demasked_ros.apps.node import models
from demasked_ros.apps.node.params import config_from_values
from demasked_ros.engines import factory
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.cuda_executor import CudaStreamExecutor


def test_gpu_path_builds_twins_and_the_stream_executor(monkeypatch):
    monkeypatch.setattr(models, "gpu_device", lambda name: ("cpu:0", None))
    monkeypatch.setattr(factory, "gpu_device", lambda name: ("cpu:0", None))
    config = config_from_values({"executor": "cuda", "streams": 3, "threads": 1})
    loaded = models.load_models(config)
    assert isinstance(loaded.executor, CudaStreamExecutor) and loaded.executor.streams == 3
    assert callable(getattr(loaded.segmenter, "segment_tensor", None))
    assert callable(getattr(loaded.demasker, "demask_tensor", None))
    values = dict(loaded.key_values())
    assert values["executor"].startswith("cuda-streams") and values["device"] == "cpu"
    assert values["streams"] == "3"
    masks = config.spec.masks(48, 64)
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    on_device = Certifier(loaded.segmenter, loaded.demasker, masks, executor=loaded.executor).certify(frame)
    chunked = Certifier(loaded.segmenter, loaded.demasker, masks).certify(frame)
    np.testing.assert_array_equal(on_device.branch_labels, chunked.branch_labels)
    np.testing.assert_array_equal(on_device.certified, chunked.certified)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback on a machine without CUDA")
def test_without_a_gpu_cuda_falls_back_with_a_reason_in_the_diagnostics(warning_log):
    log = warning_log
    loaded = models.load_models(config_from_values({"executor": "cuda", "threads": 1}), log)
    assert loaded.executor is None and not hasattr(loaded.segmenter, "segment_tensor")
    values = dict(loaded.key_values())
    assert "cuda unavailable" in values["executor"] and values["device"] == "cpu" and values["streams"] == "0"
    assert log.lines and "falling back" in log.lines[0]
