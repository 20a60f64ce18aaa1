"""The branch engine: mask, demask, segment K copies of a frame, then aggregate (Algorithm 1).

Masking comes first, on the full-resolution frame: a branch only ever receives its masked copy,
with masked pixels zeroed, so its labels depend on its visible pixels alone. Recovery and
detection share one code path; detection additionally segments the unmasked frame for f(x).

How the K branches run is up to a :class:`BranchExecutor`: the default runs them in chunks on the
calling thread (on a CPU, batching gives no speedup, chunking bounds memory); a GPU executor with
one CUDA stream per chunk plugs in through the same interface. An executor that also aggregates
(on the device, next to the branch labels) offers :meth:`AggregatingExecutor.run_aggregated`;
the Certifier then checks its output exactly as strictly and fails closed the same way. The default
executor sizes its chunks from the frame size and a memory budget
(:mod:`demasked_ros.engines.memory`), and every executor calls :meth:`StageClock.checkpoint` before
each chunk, so a cancelled (timed-out) frame is abandoned within one chunk's time and fails closed.

A user's model that normalises with batch statistics makes one branch depend on its batch-mates;
``Certifier(..., batch_probe="refuse" | "fallback")`` probes the models on random frames first
(:mod:`demasked_ros.engines.probe`) and refuses them or runs one branch per call.

Frame pipelining (the node prepares frame t+1 while frame t is certified): :meth:`Certifier.prepare`
checks a frame and, where the executor offers ``prepare`` (:class:`StagingExecutor`, e.g. a GPU
executor starting the frame's host-to-device copy), stages it; :meth:`Certifier.certify` accepts
the :class:`PreparedImage` in place of the frame and gives the same result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from demasked_ros.core.certify import detect, recover_with_margin
from demasked_ros.core.errors import CoreError
from demasked_ros.core.geometry import verify_masks
from demasked_ros.core.masks import MaskSet
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.memory import DEFAULT_MEMORY_BUDGET, branches_per_chunk
from demasked_ros.engines.probe import ProbeVerdict, probe_models
from demasked_ros.engines.protocols import Demasker, Segmenter
from demasked_ros.engines.segmenters import check_labels

LOG = logging.getLogger(__name__)
STAGES = ("masking", "demasking", "segmentation", "aggregation")
#: What ``Certifier(batch_probe=...)`` accepts: skip the probe, refuse batch-dependent models, or
#: run them one branch per call.
BATCH_PROBE_POLICIES = ("off", "refuse", "fallback")


@dataclass
class CertificationResult:
    """What :meth:`Certifier.certify` returns for one frame.

    Attributes:
        labels: H x W output labels (recovery: majority vote; detection: f(x)).
        certified: H x W bool; certified (recovery) or verified (detection) pixels.
        branch_labels: K x H x W labels of the demasked branches.
        mode: ``"recovery"`` or ``"detection"``.
        timings: seconds per stage (masking, demasking, segmentation, aggregation) and total.
    """

    labels: np.ndarray
    certified: np.ndarray
    branch_labels: np.ndarray
    mode: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def alert(self) -> np.ndarray:
        """Pixels without a certificate: detection alerts (recovery: uncertified pixels)."""
        return ~self.certified

    @property
    def certified_fraction(self) -> float:
        """Fraction of pixels certified (verified), 0-1."""
        return float(self.certified.mean())


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


class Certifier:
    """Certifies frames with DEMASKED SMOOTHING for one fixed mask set.

    Args:
        segmenter: any :class:`Segmenter` (the same model segments every branch and, in
            detection mode, the unmasked frame).
        demasker: any :class:`Demasker`.
        masks: recovery or detection masks for the frame size; checked exhaustively on
            construction, so a certifier never runs with masks that cannot support its claim.
        chunk_size: most branches per batch for the default executor (None: as many as the
            memory budget allows, up to all K).
        executor: a custom :class:`BranchExecutor` (e.g. CUDA streams); overrides ``chunk_size``
            and ``memory_budget``.
        memory_budget: bytes for one frame's working set on the default executor (default
            :data:`~demasked_ros.engines.memory.DEFAULT_MEMORY_BUDGET`; None: unbounded).
        batch_probe: ``"off"`` (default), ``"refuse"`` or ``"fallback"``: probe the models for
            batch independence first (:func:`~demasked_ros.engines.probe.probe_models`); a model
            whose branch labels depend on their batch-mates is then refused (EngineError) or run
            one branch per call (logged; :attr:`probe` keeps the verdict).
    """

    def __init__(self, segmenter: Segmenter, demasker: Demasker, masks: MaskSet,
                 chunk_size: int | None = None, executor: BranchExecutor | None = None,
                 memory_budget: int | None = DEFAULT_MEMORY_BUDGET, batch_probe: str = "off") -> None:
        try:
            verify_masks(masks)
        except CoreError as error:
            raise EngineError(f"refusing unsound masks: {error}") from error
        if batch_probe not in BATCH_PROBE_POLICIES:
            raise EngineError(f"batch_probe must be one of {list(BATCH_PROBE_POLICIES)}, got {batch_probe!r}")
        self.segmenter = segmenter
        self.demasker = demasker
        self.masks = masks
        self.executor: BranchExecutor = executor or ChunkedExecutor(chunk_size, memory_budget)
        self.probe: ProbeVerdict | None = None
        if batch_probe != "off":
            self.probe = probe_models(segmenter, demasker)
            if not self.probe.independent:
                if batch_probe == "refuse":
                    raise EngineError(f"refusing batch-dependent models: {self.probe.describe()}")
                LOG.warning("%s; running one branch per call", self.probe.describe())
                self.executor = ChunkedExecutor(1, memory_budget)

    @property
    def mode(self) -> str:
        """``"recovery"`` or ``"detection"``, from the mask set."""
        return self.masks.mode

    def prepare(self, image: np.ndarray) -> PreparedImage:
        """Check ``image`` and let a :class:`StagingExecutor` start moving it (pipelining's stage 1).

        Raises:
            EngineError: a bad frame or a failed staging (callers fail closed).
        """
        self._check_frame(image)
        stage = getattr(self.executor, "prepare", None)
        if stage is None:
            return PreparedImage(image)
        try:
            staged = stage(image)
        except EngineError:
            raise
        except Exception as error:
            raise EngineError(f"staging the frame failed: {type(error).__name__}: {error}") from error
        return PreparedImage(image, staged, self.executor)

    def certify(self, image: np.ndarray | PreparedImage,
                cancel: threading.Event | None = None) -> CertificationResult:
        """Labels and certificate for one H x W x 3 uint8 RGB frame of the masks' size.

        ``image`` may be what :meth:`prepare` returned for it; the result is the same.
        ``cancel``: set it (e.g. from a watchdog on timeout) to abandon the frame; the executor
        stops before its next chunk and this raises EngineError.

        Raises:
            EngineError: on a bad frame, any branch failure or cancellation. Nothing is certified
                then; callers fail closed (alert, no certificate) rather than reuse an older result.
        """
        start = time.perf_counter()
        frame: Any = image  # what the executor gets: the image, or its handle from this executor
        if isinstance(image, PreparedImage):
            prepared, image = image, image.image
            staged = prepared.staged is not None and prepared.executor is self.executor
            frame = prepared.staged if staged else image
        self._check_frame(image)
        clock = StageClock(cancel)
        aggregating = getattr(self.executor, "run_aggregated", None)
        try:
            if aggregating is not None:
                aggregated = aggregating(frame, self.masks, self.demasker, self.segmenter, clock,
                                         self.masks.n_patches * self.masks.t)
                branch_labels = getattr(aggregated, "branch_labels", None)
            else:
                branch_labels = self.executor.run(frame, self.masks, self.demasker, self.segmenter, clock)
        except EngineError:
            raise
        except Exception as error:
            raise EngineError(f"branch failed: {type(error).__name__}: {error}") from error
        branch_labels = self._check_branch_labels(branch_labels)
        if aggregating is not None:
            labels, certified = self._check_aggregate(aggregated, image.shape[:2])
        elif self.mode == "recovery":
            with clock.measure("aggregation"):
                # Unanimity for the default K = 2NT+1; a winning margin > 2NT for larger K.
                labels, certified = recover_with_margin(branch_labels,
                                                        self.masks.n_patches * self.masks.t)
        else:
            clock.checkpoint()
            with clock.measure("segmentation"):
                frame = image[None]
                try:
                    plain = check_labels(self.segmenter.segment(frame), frame,
                                         len(self.segmenter.class_names))[0]
                except EngineError:
                    raise
                except Exception as error:
                    raise EngineError(f"segmentation of the frame failed: {error}") from error
            with clock.measure("aggregation"):
                certified = detect(plain, branch_labels)
                labels = plain
        timings = dict(clock.seconds)
        timings["total"] = time.perf_counter() - start
        return CertificationResult(labels=labels, certified=certified, branch_labels=branch_labels,
                                   mode=self.mode, timings=timings)

    def _check_aggregate(self, aggregated: AggregatedBranches,
                         size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Fail closed on an aggregate of the wrong shape, type or label range (never publish it)."""
        labels, certified = getattr(aggregated, "labels", None), getattr(aggregated, "certified", None)
        if (not isinstance(labels, np.ndarray) or labels.shape != size
                or not np.issubdtype(labels.dtype, np.integer)):
            raise EngineError(f"executor returned labels {getattr(labels, 'shape', type(labels))}, "
                              f"expected integer {size}")
        classes = len(self.segmenter.class_names)
        if labels.min() < 0 or labels.max() >= classes:
            raise EngineError(f"executor returned labels outside 0..{classes - 1}")
        if not isinstance(certified, np.ndarray) or certified.shape != size or certified.dtype != bool:
            raise EngineError("executor returned a certificate "
                              f"{getattr(certified, 'shape', type(certified))} "
                              f"{getattr(certified, 'dtype', '')}, expected bool {size}")
        return labels, certified

    def _check_branch_labels(self, branch_labels: object) -> np.ndarray:
        """Fail closed unless the executor returned exactly K valid label maps of the frame's size.

        A custom executor (e.g. on a GPU) is outside this module, so its output is checked here
        rather than trusted: a missing or extra branch must never reach the vote.
        """
        expected = (self.masks.k, self.masks.height, self.masks.width)
        if not isinstance(branch_labels, np.ndarray) or branch_labels.shape != expected:
            raise EngineError(f"executor returned {getattr(branch_labels, 'shape', type(branch_labels))} "
                              f"branch labels, expected {expected}")
        if not np.issubdtype(branch_labels.dtype, np.integer):
            raise EngineError(f"executor returned {branch_labels.dtype} branch labels, expected integers")
        classes = len(self.segmenter.class_names)
        if branch_labels.min() < 0 or branch_labels.max() >= classes:
            raise EngineError(f"executor returned branch labels outside 0..{classes - 1}")
        return branch_labels

    def _check_frame(self, image: np.ndarray) -> None:
        expected = (self.masks.height, self.masks.width, 3)
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != expected:
            raise EngineError(f"frame must be uint8 {expected} (the masks' size), got "
                              f"{getattr(image, 'shape', type(image))} {getattr(image, 'dtype', '')}")
