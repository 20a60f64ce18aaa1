"""Staging a frame on the device ahead of its certification (the node's frame pipelining).

Why: on a GPU the K branches of frame t take milliseconds, and copying frame t+1 to the device
inside the next ``run`` would add its copy time to every frame. :func:`stage_frame` copies the
frame into pinned host memory and starts its host-to-device copy on a stream of its own (the
executor's upload stream), recording an event, while frame t's branches still run on other
streams. :func:`claim` makes the stream that masks the frame wait for that event, so the copy
overlaps the previous frame and the bits that reach the branches are exactly the frame's.

Soundness is unchanged: staging only moves the unmasked frame to where the executor masks it
first, the same pixels the executor's own upload would copy. ``device="cpu"`` runs the same code
(no pinning, no streams, no events), which is how CI tests it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from demasked_ros.engines.errors import EngineError


@dataclass(frozen=True)
class StagedFrame:
    """A frame on its way to the device: what ``CudaStreamExecutor.prepare`` returns.

    Attributes:
        image: read-only H x W x 3 uint8 host pixels, exactly those copied to the device (engines
            that run on CPU threads and the unmasked-frame segmentation read them).
        tensor: the frame as 3 x H x W uint8 on :attr:`device` (valid once :attr:`ready` fired).
        device: where :attr:`tensor` lives.
        ready: CUDA event recorded after the copy; None on the CPU (nothing to wait for).
    """

    image: np.ndarray
    tensor: torch.Tensor
    device: torch.device
    ready: torch.cuda.Event | None


def stage_frame(image: np.ndarray, device: torch.device, stream: torch.cuda.Stream | None) -> StagedFrame:
    """Copy ``image`` (H x W x 3 uint8) to ``device`` asynchronously on ``stream``.

    Raises:
        EngineError: an image that is not H x W x 3 uint8.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        raise EngineError(f"frame must be H x W x 3 uint8, got {getattr(image, 'shape', type(image))} "
                          f"{getattr(image, 'dtype', '')}")
    cuda = device.type == "cuda"
    scope: contextlib.AbstractContextManager[Any] = torch.cuda.device(device) if cuda \
        else contextlib.nullcontext()
    on_stream: contextlib.AbstractContextManager[Any] = torch.cuda.stream(stream) if stream is not None \
        else contextlib.nullcontext()
    with scope, on_stream:
        host = torch.empty(image.shape, dtype=torch.uint8, pin_memory=cuda)
        pixels = host.numpy()  # keeps ``host`` (and its pinned block) alive as long as it lives
        pixels[...] = image
        tensor = host.to(device, non_blocking=True).permute(2, 0, 1).contiguous()
        ready = None
        if stream is not None:
            ready = torch.cuda.Event()
            ready.record(stream)
    pixels.flags.writeable = False  # the host and device copies must stay the same pixels
    return StagedFrame(image=pixels, tensor=tensor, device=device, ready=ready)


def claim(staged: StagedFrame, device: torch.device,
          stream: torch.cuda.Stream | None) -> tuple[np.ndarray, torch.Tensor]:
    """The staged frame's host pixels and device tensor, for work queued on ``stream`` from now on.

    ``stream`` waits for the copy, and the tensor's memory is kept from reuse until the work
    queued on ``stream`` is done (it was allocated on the upload stream).

    Raises:
        EngineError: a frame staged for another device.
    """
    if staged.device != device:
        raise EngineError(f"frame was staged on {staged.device}, the executor runs on {device}")
    if stream is not None:
        if staged.ready is not None:
            stream.wait_event(staged.ready)
        staged.tensor.record_stream(stream)
    return staged.image, staged.tensor
