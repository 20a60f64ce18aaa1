"""Executors that certify frames in-process, in local worker processes or on a Ray cluster.

All three share one contract (:class:`~demasked_ros.apps.evaluate.runner.Executor`): the main process
decodes frames and hands ``(frame, configuration ids, keep arrays)`` jobs over; outcomes (per-frame
sufficient statistics, never accumulated metrics) come back *in input order*, so the JSONL, the
summary and the merged :class:`~demasked_ros.core.metrics.CertificationMetrics` are identical to a
single-process run whatever the number of workers. At most ``window`` frames are in flight, which
bounds memory and makes Ctrl-C lose at most those frames (they are redone on resume).

Each worker builds its :class:`~demasked_ros.apps.evaluate.runner.FrameEvaluator` once (models are
loaded once per worker) and pins its libraries to one thread, so workers do not oversubscribe cores
and inference stays deterministic.

Ray is optional: :class:`RayExecutor` imports it lazily and says how to install it when missing.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demasked_ros.apps.evaluate.config import EvalConfig, EvaluationError
from demasked_ros.apps.evaluate.engines import EngineFactory
from demasked_ros.apps.evaluate.runner import FrameEvaluator, FrameOutcome
from demasked_ros.datasets.base import Frame, FrameRecord

Job = tuple[FrameRecord, list[str], bool]
RAY_HINT = "install it with `pip install 'ray[default]>=2.9'`, or drop --ray"


@dataclass(frozen=True)
class EvaluatorSpec:
    """Picklable recipe for a :class:`FrameEvaluator` (what a worker needs to build its own)."""

    configs: tuple[EvalConfig, ...]
    factory: EngineFactory
    num_classes: int
    ignore_index: int

    def build(self) -> FrameEvaluator:
        """A fresh evaluator (engines are loaded lazily, once, by the evaluator)."""
        return FrameEvaluator(self.configs, self.factory, self.num_classes, self.ignore_index)


def pin_threads() -> None:
    """One compute thread per worker process: no oversubscription, deterministic reductions."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - OpenCV is a core requirement
        pass


def ordered_map(jobs: Iterator[Job], submit: Callable[[Job], Any], collect: Callable[[Any], FrameOutcome],
                window: int) -> Iterator[FrameOutcome]:
    """Submit jobs with at most ``window`` in flight; yield outcomes in submission order.

    The main process keeps each job's frame while it is in flight and re-attaches it to the outcome
    when arrays were requested (sinks draw the input image), so frames never travel back.
    """
    pending: deque[tuple[Job, Any]] = deque()

    def finish() -> FrameOutcome:
        (record, _, keep), handle = pending.popleft()
        outcome = collect(handle)
        if keep and isinstance(record, Frame):
            outcome.frame = record
        return outcome

    for job in jobs:
        pending.append((job, submit(job)))
        if len(pending) >= window:
            yield finish()
    while pending:
        yield finish()


class SerialExecutor:
    """Certifies frames in the calling process (the reference the others must match)."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        self.evaluator = spec.build()

    def map(self, jobs: Iterator[Job]) -> Iterator[FrameOutcome]:
        """Outcomes in input order."""
        return ordered_map(jobs, lambda job: self.evaluator.evaluate(*job), lambda outcome: outcome, 1)

    def close(self) -> None:
        """Nothing to release."""


_WORKER: FrameEvaluator | None = None


def _init_worker(spec: EvaluatorSpec) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and stops the pool
    pin_threads()
    _WORKER = spec.build()


def _work(job: Job) -> FrameOutcome:
    if _WORKER is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("worker used before initialisation")
    record, config_ids, keep = job
    return _WORKER.evaluate(record, config_ids, keep)


class ProcessExecutor:
    """``workers`` local processes (spawned, so no state leaks from the parent)."""

    def __init__(self, spec: EvaluatorSpec, workers: int, start_method: str = "spawn") -> None:
        if workers < 1:
            raise EvaluationError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        context = multiprocessing.get_context(start_method)
        self.pool = context.Pool(workers, initializer=_init_worker, initargs=(spec,))

    def map(self, jobs: Iterator[Job]) -> Iterator[FrameOutcome]:
        """Outcomes in input order; 2 x workers frames in flight."""
        return ordered_map(jobs, lambda job: self.pool.apply_async(_work, (job,)),
                           lambda handle: handle.get(), 2 * self.workers)

    def close(self) -> None:
        """Stop the workers (also after Ctrl-C: pending jobs are dropped, not waited for)."""
        self.pool.terminate()
        self.pool.join()


class _RayWorker:
    """Body of the Ray actor: one evaluator per actor, built once."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        pin_threads()
        self.evaluator = spec.build()

    def evaluate(self, job: Job) -> FrameOutcome:
        record, config_ids, keep = job
        return self.evaluator.evaluate(record, config_ids, keep)


def ray_init_arguments(address: str, num_cpus: int | None) -> dict[str, Any]:
    """``ray.init`` keyword arguments for ``--ray ADDRESS``.

    ``local`` starts a private local instance; ``auto`` joins a running cluster (``ray start`` /
    RAY_ADDRESS) and falls back to a local instance when there is none; anything else is a cluster
    address (``HOST:PORT`` or ``ray://HOST:PORT``). Local instances get the repository on the
    workers' PYTHONPATH, no dashboard and quiet logs, and bind to loopback only (network rule: a
    local instance would otherwise listen on the machine's own network address).
    """
    package_root = str(Path(__file__).resolve().parents[3])
    local = {
        "_node_ip_address": "127.0.0.1",
        "num_cpus": num_cpus, "include_dashboard": False, "log_to_driver": False,
        "configure_logging": False,
        "runtime_env": {"env_vars": {
            "PYTHONPATH": os.pathsep.join([package_root, *[p for p in sys.path if p]]),
            "RAY_USAGE_STATS_ENABLED": "0"}},
    }
    if address == "local":
        return local
    if address == "auto":
        running = os.environ.get("RAY_ADDRESS") or Path("/tmp/ray/ray_current_cluster").exists()
        return {"address": "auto", "log_to_driver": False} if running else local
    return {"address": address, "log_to_driver": False}


class RayExecutor:
    """Frames sharded over ``workers`` Ray actors (default: one per CPU of the cluster).

    Args:
        address: ``local``, ``auto`` or a cluster address (see :func:`ray_init_arguments`).
        workers: number of actors; each holds its own models.
        num_gpus: GPUs per actor (0 = CPU; give 1 on GPU clusters with an ONNX CUDA segmenter).
    """

    def __init__(self, spec: EvaluatorSpec, address: str, workers: int | None = None,
                 num_gpus: float = 0.0) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError as error:
            raise EvaluationError(f"--ray needs the 'ray' package, which is not installed: "
                                  f"{RAY_HINT}") from error
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            try:
                ray.init(**ray_init_arguments(address, workers))
            except Exception as error:  # ConnectionError, RuntimeError, ... depending on the version
                raise EvaluationError(f"cannot start or reach Ray at {address!r}: {error}") from error
        count = workers or max(1, int(ray.available_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1, num_gpus=num_gpus)(_RayWorker)
        spec_ref = ray.put(spec)
        self.actors: Sequence[Any] = [actor.remote(spec_ref) for _ in range(count)]
        self._next = 0

    def _submit(self, job: Job) -> Any:
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        return actor.evaluate.remote(job)

    def map(self, jobs: Iterator[Job]) -> Iterator[FrameOutcome]:
        """Outcomes in input order; 2 frames per actor in flight."""
        return ordered_map(jobs, self._submit, self.ray.get, 2 * len(self.actors))

    def close(self) -> None:
        """Kill the actors; shut Ray down if this executor started it."""
        for actor in self.actors:
            self.ray.kill(actor)
        if self.started_here:
            self.ray.shutdown()


def make_executor(spec: EvaluatorSpec, workers: int = 1, ray_address: str | None = None,
                  gpus_per_worker: float = 0.0) -> Any:
    """The executor for ``--workers`` / ``--ray`` (serial for ``workers == 1`` without Ray)."""
    if ray_address:
        return RayExecutor(spec, ray_address, workers if workers > 1 else None, gpus_per_worker)
    if workers > 1:
        return ProcessExecutor(spec, workers)
    return SerialExecutor(spec)
