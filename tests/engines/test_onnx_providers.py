"""Execution-provider resolution: aliases, clear errors, and the no-silent-fallback check."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.onnx_providers import (
    available_providers,
    canonical_provider,
    check_active,
    resolve_providers,
)
from tests.tiny_models import write_conv_model


class FakeSession:
    """Stands in for an InferenceSession that fell back to the CPU."""

    def __init__(self, active):
        self.active = active

    def get_providers(self):
        return list(self.active)


@pytest.mark.parametrize(("name", "expected"), [
    ("cpu", "CPUExecutionProvider"), ("CPU", "CPUExecutionProvider"),
    ("CUDA", "CUDAExecutionProvider"), ("TensorRT", "TensorrtExecutionProvider"),
    ("trt", "TensorrtExecutionProvider"), ("CUDAExecutionProvider", "CUDAExecutionProvider"),
])
def test_short_names_map_to_onnxruntime_provider_names(name, expected):
    assert canonical_provider(name) == expected


def test_unknown_and_empty_names_are_clear_errors():
    with pytest.raises(EngineError, match="unknown execution provider"):
        canonical_provider("vulkan")
    with pytest.raises(EngineError, match="empty"):
        canonical_provider("  ")
    with pytest.raises(EngineError, match="no execution provider"):
        resolve_providers([])


def test_cpu_resolves_deduplicated_in_order():
    assert resolve_providers(["cpu", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert resolve_providers("CPU") == ["CPUExecutionProvider"]


def test_provider_missing_from_this_build_names_the_gpu_extra():
    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this onnxruntime build offers CUDA")
    with pytest.raises(EngineError, match=r"not in this onnxruntime build.*onnxruntime-gpu"):
        resolve_providers(["cuda", "cpu"])


def test_silent_cpu_fallback_is_detected():
    fell_back = FakeSession(["CPUExecutionProvider"])
    with pytest.raises(EngineError, match=r"CUDAExecutionProvider.*did not become active"):
        check_active(fell_back, ["CUDA", "CPU"])
    assert check_active(FakeSession(["CUDAExecutionProvider", "CPUExecutionProvider"]), ["cuda"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_real_cpu_session_passes_the_check(tmp_path):
    model = write_conv_model(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(model), providers=resolve_providers(["cpu"]))
    assert check_active(session, ["cpu"]) == ["CPUExecutionProvider"]
