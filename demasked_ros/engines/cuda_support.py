"""What the CUDA stream executor builds on: streams (no-ops on CPU), tensor-path checks, result checks.

Split from :mod:`demasked_ros.engines.cuda_executor` (which re-exports the public names): a
:class:`_Lane` is one CUDA stream, or a stand-in whose calls do nothing on ``device="cpu"``, so the
executor runs the same code in CI; :func:`tensor_segmenter` / :func:`tensor_demasker` decide whether an
engine can stay on the device (and refuse a torch engine on another device);
:func:`cuda_unavailable_reason` is the node's ``executor: cuda|auto`` test; and the two checks at the
end turn a failed CPU thread or a malformed label tensor into :class:`EngineError` (fail closed).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.protocols import Demasker, Segmenter
from demasked_ros.engines.torch_runtime import resolve_device


class _Lane:
    """One CUDA stream, or a no-op stand-in on the CPU (same calls, nothing happens)."""

    def __init__(self, device: torch.device) -> None:
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def use(self) -> contextlib.AbstractContextManager[Any]:
        """Make this stream current for the enclosed work."""
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    def wait_for(self, other: torch.cuda.Stream | None) -> None:
        """Order this stream after everything already queued on ``other``."""
        if self.stream is not None and other is not None:
            self.stream.wait_stream(other)

    def join_into(self, main: torch.cuda.Stream | None) -> None:
        """Record an event on this stream and make ``main`` wait for it."""
        if self.stream is not None and main is not None:
            event = torch.cuda.Event()
            event.record(self.stream)
            main.wait_event(event)


def tensor_segmenter(segmenter: Segmenter, device: torch.device) -> bool:
    """True when ``segmenter`` has a tensor path on ``device``; raises when it is on another device."""
    return _tensor_engine(segmenter, "segment_tensor", device)


def tensor_demasker(demasker: Demasker, device: torch.device) -> bool:
    """True when ``demasker`` has a tensor path on ``device``; raises when it is on another device."""
    return _tensor_engine(demasker, "demask_tensor", device)


def _tensor_engine(engine: object, method: str, device: torch.device) -> bool:
    if not callable(getattr(engine, method, None)):
        return False
    engine_device = getattr(engine, "device", None)
    if engine_device != device:
        raise EngineError(f"{type(engine).__name__} runs on {engine_device}, the executor on {device}; "
                          "build the torch engines on the executor's device")
    return True


def cuda_unavailable_reason(segmenter: Segmenter | None = None, demasker: Demasker | None = None,
                            device: str = "cuda") -> str | None:
    """Why the CUDA stream executor cannot serve these engines on ``device`` (None: it can).

    For the node's ``executor: cuda|auto`` choice: torch must see the device, and the segmenter
    must have a tensor path there (a demasker without one runs on CPU threads, which is fine).
    """
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        return "torch sees no CUDA device (CPU-only torch build or no GPU)"
    try:
        resolved = resolve_device(device)
        if segmenter is not None and not tensor_segmenter(segmenter, resolved):
            return f"{type(segmenter).__name__} has no device tensor path (use backend='torch')"
        if demasker is not None:
            tensor_demasker(demasker, resolved)  # raises when it is a torch engine on another device
    except EngineError as error:
        return str(error)
    return None


def _result(future: Future[np.ndarray]) -> np.ndarray:
    try:
        return future.result()
    except EngineError:
        raise
    except Exception as error:
        raise EngineError(f"branch failed on a CPU thread: {type(error).__name__}: {error}") from error


def _check_device_labels(labels: torch.Tensor, batch: int, height: int, width: int) -> None:
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (batch, height, width) \
            or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise EngineError(f"segmenter returned {tuple(getattr(labels, 'shape', ()))} "
                          f"{getattr(labels, 'dtype', type(labels))}, "
                          f"expected integer {(batch, height, width)}")

