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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from demasked_ros.core.certify import detect, recover_with_margin
from demasked_ros.core.errors import CoreError
from demasked_ros.core.geometry import verify_masks
from demasked_ros.core.masks import MaskSet
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.executors import (
    STAGES,
    AggregatedBranches,
    AggregatingExecutor,
    BranchExecutor,
    ChunkedExecutor,
    PreparedImage,
    StageClock,
    StagingExecutor,
    mask_images,
)
from demasked_ros.engines.memory import DEFAULT_MEMORY_BUDGET
from demasked_ros.engines.probe import ProbeVerdict, probe_models
from demasked_ros.engines.protocols import Demasker, Segmenter
from demasked_ros.engines.segmenters import check_labels

LOG = logging.getLogger(__name__)
# Re-exported: the executor types were defined here before engines/executors.py held them.
__all__ = ["BATCH_PROBE_POLICIES", "STAGES", "AggregatedBranches", "AggregatingExecutor", "BranchExecutor",
           "CertificationResult", "Certifier", "ChunkedExecutor", "PreparedImage", "StageClock",
           "StagingExecutor", "mask_images"]
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
