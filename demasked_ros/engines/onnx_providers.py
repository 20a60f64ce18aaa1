"""ONNX Runtime execution-provider resolution: CPU, CUDA or TensorRT from configuration.

Why: ``onnxruntime-gpu`` silently falls back to the CPU when CUDA or TensorRT cannot start
(missing libraries, no device). A certifier that believes it runs on a GPU but runs on the CPU
misses its deadlines, so a requested provider that is not actually active is an error here,
checked against ``session.get_providers()`` after the session is created.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from demasked_ros.engines.errors import EngineError

#: Short names accepted in configuration files, mapped to ONNX Runtime provider names.
PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

_GPU_HINT = (
    "install the optional extra (pip install 'demasked_ros[gpu]', i.e. onnxruntime-gpu, instead "
    "of onnxruntime) and make sure the CUDA/cuDNN (and TensorRT) libraries are on the library path"
)


def canonical_provider(name: str) -> str:
    """``"cuda"`` / ``"CUDA"`` / ``"CUDAExecutionProvider"`` -> ``"CUDAExecutionProvider"``."""
    stripped = name.strip()
    if not stripped:
        raise EngineError("empty execution provider name")
    alias = PROVIDER_ALIASES.get(stripped.lower())
    if alias is not None:
        return alias
    if not stripped.endswith("ExecutionProvider"):
        raise EngineError(
            f"unknown execution provider {name!r}; use one of {sorted(set(PROVIDER_ALIASES))} "
            "or a full ONNX Runtime provider name such as 'CUDAExecutionProvider'"
        )
    return stripped


def available_providers() -> list[str]:
    """Providers this onnxruntime build offers (compiled in; not proof that they can start)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(requested: Sequence[str]) -> list[str]:
    """Canonical, de-duplicated provider list in priority order, each one offered by this build.

    Raises :class:`EngineError` for unknown names, an empty request, or a provider the installed
    onnxruntime does not include (e.g. CUDA with the CPU-only ``onnxruntime`` wheel).
    """
    if isinstance(requested, str):
        requested = [requested]
    resolved: list[str] = []
    for name in requested:
        provider = canonical_provider(name)
        if provider not in resolved:
            resolved.append(provider)
    if not resolved:
        raise EngineError("no execution provider requested; use e.g. ['CPUExecutionProvider']")
    offered = available_providers()
    missing = [p for p in resolved if p not in offered]
    if missing:
        hint = _GPU_HINT if any(p != "CPUExecutionProvider" for p in missing) else ""
        raise EngineError(
            f"execution providers {missing} are not in this onnxruntime build "
            f"(available: {offered}){'; ' + hint if hint else ''}"
        )
    return resolved


def check_active(session: Any, requested: Sequence[str]) -> list[str]:
    """Raise :class:`EngineError` unless every requested provider is active in ``session``.

    ``session`` is an ``onnxruntime.InferenceSession`` (anything with ``get_providers()``).
    Returns the active providers. This is the check that catches onnxruntime-gpu's silent
    fallback to the CPU.
    """
    if isinstance(requested, str):
        requested = [requested]
    active = list(session.get_providers())
    wanted = [canonical_provider(name) for name in requested]
    missing = [p for p in wanted if p not in active]
    if missing:
        raise EngineError(
            f"requested execution providers {missing} did not become active (active: {active}); "
            f"ONNX Runtime fell back silently. {_GPU_HINT}"
        )
    return active
