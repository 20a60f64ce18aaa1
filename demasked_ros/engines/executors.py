"""How the K branches of one frame run: the executor protocols and the default chunked executor.

A :class:`BranchExecutor` masks, demasks and segments every branch of a frame; the Certifier
(:mod:`demasked_ros.engines.certifier`) owns everything around it (mask checks, aggregation,
fail-closed checks of what an executor returns). Masking comes first: a branch only ever receives
its masked copy, with masked pixels zeroed (:func:`mask_images`).

- :class:`ChunkedExecutor` (the default) runs branches on the calling thread, a chunk at a time,
  sized from the frame and a memory budget (:mod:`demasked_ros.engines.memory`).
- :class:`AggregatingExecutor` also aggregates where the branch labels are (e.g. a GPU);
  :class:`StagingExecutor` starts moving a frame to its device ahead of time (frame pipelining).
- :class:`StageClock` times the stages and carries the frame's cancellation event: every executor
  calls :meth:`StageClock.checkpoint` before each chunk, so a timed-out frame stops within one
  chunk's time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from demasked_ros.core.masks import MaskSet
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.memory import DEFAULT_MEMORY_BUDGET, branches_per_chunk
from demasked_ros.engines.protocols import Demasker, Segmenter
from demasked_ros.engines.segmenters import check_labels

STAGES = ("masking", "demasking", "segmentation", "aggregation")


class StageClock:
    """Accumulates wall time per pipeline stage and carries the frame's cancellation event."""

    def __init__(self, cancel: threading.Event | None = None) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.cancel = cancel

    def checkpoint(self) -> None:
        """Raise EngineError when the frame was cancelled (timed out): executors call it between chunks."""
        if self.cancel is not None and self.cancel.is_set():
            raise EngineError("frame cancelled (timed out) between branch chunks")

    def measure(self, stage: str) -> _Lap:
        """Context manager adding the time spent inside it to ``stage``."""
        return _Lap(self, stage)


class _Lap:
    def __init__(self, clock: StageClock, stage: str) -> None:
        self.clock, self.stage, self.start = clock, stage, 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.clock.seconds[self.stage] += time.perf_counter() - self.start


class BranchExecutor(Protocol):
    """Runs the K branches of one frame and returns their labels (K x H x W).

    Implementations call ``clock.checkpoint()`` before each chunk of branches, so a cancelled
    frame stops within one chunk (the EngineError it raises fails the frame closed).
    """

    def run(self, image: np.ndarray, masks: MaskSet, demasker: Demasker, segmenter: Segmenter,
            clock: StageClock) -> np.ndarray:
        """Mask, demask and segment every branch of ``image``; record stage times on ``clock``."""
        ...


@dataclass
class AggregatedBranches:
    """What an aggregating executor returns: the frame's labels and certificate with the branches.

    ``labels``: H x W integers (recovery: majority vote; detection: f(x)); ``certified``: H x W
    bool; ``branch_labels``: K x H x W integers.
    """

    labels: np.ndarray
    certified: np.ndarray
    branch_labels: np.ndarray


class AggregatingExecutor(BranchExecutor, Protocol):
    """A :class:`BranchExecutor` that can also aggregate where the branch labels are (e.g. a GPU).

    Optional: the Certifier uses :meth:`run_aggregated` when an executor has it, ``run`` otherwise.
    It must compute exactly :func:`~demasked_ros.core.certify.recover_with_margin` with ``t``
    (recovery) or :func:`~demasked_ros.core.certify.detect` against the unmasked frame's labels
    (detection), and raise on any failure.
    """

    def run_aggregated(self, image: np.ndarray, masks: MaskSet, demasker: Demasker, segmenter: Segmenter,
                       clock: StageClock, t: int) -> AggregatedBranches:
        """Branches, f(x) in detection mode, and the aggregate; stage times on ``clock``."""
        ...


class StagingExecutor(BranchExecutor, Protocol):
    """A :class:`BranchExecutor` that can start moving a frame to its device before it runs.

    Optional: :meth:`Certifier.prepare` calls :meth:`prepare` when an executor has it. ``run`` and
    ``run_aggregated`` must accept the returned handle in place of the image, with exactly the
    image's pixels, and ``prepare`` must be safe to call while another frame runs.
    """

    def prepare(self, image: np.ndarray) -> object:
        """A handle of ``image`` (H x W x 3 uint8) on its way to where the branches run."""
        ...


@dataclass(frozen=True)
class PreparedImage:
    """A frame checked against the masks and staged by the executor (:meth:`Certifier.prepare`).

    ``image``: the H x W x 3 uint8 frame (must not change until certified); ``staged``: the
    executor's handle, None where the executor stages nothing; ``executor``: the executor that
    staged it (the handle is only ever given back to that executor).
    """

    image: np.ndarray
    staged: object | None = None
    executor: object | None = None


class ChunkedExecutor:
    """Runs branches on the calling thread, a chunk at a time, within a memory budget.

    Args:
        chunk_size: most branches per batch (None: no fixed limit, only the budget's).
        memory_budget: bytes one frame's working set may take (masked and demasked copies,
            labels and the models' activations, see :mod:`demasked_ros.engines.memory`); the
            branches per chunk are derived from it and the frame size, at least 1. None: no budget.

    Each chunk's masked copies are built from the frame and the masks alone, with masked pixels
    set to zero before the demasker sees them.
    """

    def __init__(self, chunk_size: int | None = None,
                 memory_budget: int | None = DEFAULT_MEMORY_BUDGET) -> None:
        if chunk_size is not None and chunk_size < 1:
            raise EngineError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        if memory_budget is not None and memory_budget < 1:
            raise EngineError(f"memory_budget must be >= 1 byte or None, got {memory_budget}")
        self.chunk_size = chunk_size
        self.memory_budget = memory_budget

    def chunk_for(self, k: int, height: int = 0, width: int = 0) -> int:
        """Branches per chunk for ``k`` branches of ``height x width`` frames (1..k)."""
        size = k if self.chunk_size is None else min(k, self.chunk_size)
        if self.memory_budget is not None and height and width:
            size = min(size, branches_per_chunk(height, width, k, self.memory_budget))
        return max(1, size)

    def chunks(self, k: int, height: int = 0, width: int = 0) -> Iterator[slice]:
        """Consecutive branch index ranges covering 0..k-1 (sized for the frame when given)."""
        size = self.chunk_for(k, height, width)
        for start in range(0, k, size):
            yield slice(start, min(k, start + size))

    def run(self, image: np.ndarray, masks: MaskSet, demasker: Demasker, segmenter: Segmenter,
            clock: StageClock) -> np.ndarray:
        """Labels of all K branches, in mask order (written into one preallocated array)."""
        height, width = image.shape[:2]
        out: np.ndarray | None = None
        for chunk in self.chunks(masks.k, height, width):
            clock.checkpoint()
            visible = masks.visible[chunk]
            with clock.measure("masking"):
                masked = mask_images(image, visible)
            with clock.measure("demasking"):
                demasked = demasker.demask(masked, visible)
            del masked
            if not isinstance(demasked, np.ndarray) or demasked.shape != (len(visible), *image.shape) \
                    or demasked.dtype != np.uint8:
                raise EngineError(f"demasker returned {getattr(demasked, 'shape', type(demasked))}, "
                                  f"expected uint8 {(len(visible), *image.shape)}")
            with clock.measure("segmentation"):
                labels = check_labels(segmenter.segment(demasked), demasked, len(segmenter.class_names))
            del demasked
            if out is None:
                out = np.empty((masks.k, height, width), dtype=labels.dtype)
            out[chunk] = labels
        assert out is not None  # masks.k >= 1
        return out


def mask_images(image: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """``len(visible)`` copies of ``image`` with masked pixels set to zero (B x H x W x 3 uint8)."""
    out = np.empty((len(visible), *image.shape), dtype=np.uint8)
    np.multiply(image[None], visible[..., None], out=out, casting="unsafe")
    return out
