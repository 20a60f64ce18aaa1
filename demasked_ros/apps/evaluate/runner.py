"""One pass over decoded frames that evaluates every configuration, resumably.

Per frame and configuration: ``Certifier.certify`` -> per-frame sufficient statistics
(:func:`~demasked_ros.core.metrics.frame_statistics`) -> one JSON line in ``frames.jsonl`` (written
and flushed at once) -> :meth:`CertificationMetrics.add_statistics`. The JSONL is the single source
of truth: a rerun reads it back, restores the accumulators from the stored statistics and skips the
(frame, configuration) pairs already done, so an interrupted run resumes exactly where it stopped
and ends with the same numbers as an uninterrupted one. Failed frames are written as ``"status":
"error"`` lines, counted in the summary, and retried on the next run.

How frames are certified is up to an executor (:mod:`.parallel`: in-process, local worker processes
or Ray); this module only needs its ``map``. Certification itself lives in :class:`FrameEvaluator`,
which each worker builds once.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from demasked_ros.apps.evaluate.config import EvalConfig, EvaluationError
from demasked_ros.apps.evaluate.engines import EngineFactory
from demasked_ros.core.errors import CoreError
from demasked_ros.core.metrics import CertificationMetrics, frame_statistics, summarise_frame
from demasked_ros.datasets.base import Frame, FrameError, FrameRecord
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.probe import ProbeVerdict, probe_models
from demasked_ros.engines.protocols import Demasker, Segmenter

JSONL_NAME = "frames.jsonl"


@dataclass
class ConfigOutcome:
    """One configuration's result on one frame: the JSONL record and, if asked, the arrays."""

    record: dict[str, Any]
    labels: np.ndarray | None = None
    certified: np.ndarray | None = None


@dataclass
class FrameOutcome:
    """Everything the main process needs about one frame (picklable, sent back by workers)."""

    index: int
    name: str
    stamp_ns: int
    results: dict[str, ConfigOutcome]
    frame: Frame | None = None  # attached by the executor in the main process when arrays are kept


LOG = logging.getLogger(__name__)


class FrameEvaluator:
    """Certifies one frame under many configurations, caching engines and certifiers.

    Args:
        configs: the configurations (by id).
        factory: builds the segmenters / demaskers the configurations name (each built once).
        num_classes, ignore_index: the ground-truth label set, for the per-frame statistics.
    """

    def __init__(self, configs: Sequence[EvalConfig], factory: EngineFactory, num_classes: int,
                 ignore_index: int) -> None:
        self.configs = {config.config_id: config for config in configs}
        self.factory = factory
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._segmenters: dict[str, Segmenter] = {}
        self._demaskers: dict[str, Demasker] = {}
        self._certifiers: dict[tuple[str, int, int], Certifier] = {}
        #: Batch-independence verdict per (segmenter, demasker) name pair, probed on first use.
        self.probes: dict[tuple[str, str], ProbeVerdict] = {}

    def engines(self, config: EvalConfig) -> tuple[Segmenter, Demasker]:
        """The (cached) segmenter and demasker of ``config``; EvaluationError when unavailable."""
        if config.segmenter not in self._segmenters:
            segmenter = self.factory.segmenter(config.segmenter)
            if len(segmenter.class_names) > self.num_classes:
                raise EvaluationError(
                    f"segmenter {config.segmenter!r} has {len(segmenter.class_names)} classes but the "
                    f"ground truth has {self.num_classes}; evaluate it on a matching label set")
            self._segmenters[config.segmenter] = segmenter
        if config.demasker not in self._demaskers:
            self._demaskers[config.demasker] = self.factory.demasker(config.demasker)
        return self._segmenters[config.segmenter], self._demaskers[config.demasker]

    def probe(self, config: EvalConfig) -> ProbeVerdict:
        """Batch-independence verdict of ``config``'s models (probed once per pair, logged).

        Batch-dependent models are run one branch per call (sound whatever they do with a batch).
        """
        pair = (config.segmenter, config.demasker)
        if pair not in self.probes:
            segmenter, demasker = self.engines(config)
            verdict = probe_models(segmenter, demasker)
            if not verdict.independent:
                LOG.warning("%s + %s: %s; running one branch per call", *pair, verdict.describe())
            self.probes[pair] = verdict
        return self.probes[pair]

    def certifier(self, config: EvalConfig, height: int, width: int) -> Certifier:
        """The (cached) certifier of ``config`` for this image size.

        Raises:
            EvaluationError: the masks do not fit this image size, or the engine refuses them.
        """
        key = (config.config_id, height, width)
        if key not in self._certifiers:
            segmenter, demasker = self.engines(config)
            try:
                chunk = None if self.probe(config).independent else 1
                self._certifiers[key] = Certifier(segmenter, demasker, config.masks(height, width),
                                                  chunk_size=chunk)
            except EngineError as error:
                raise EvaluationError(f"{config.config_id}: {error}") from error
        return self._certifiers[key]

    def evaluate(self, record: FrameRecord, config_ids: Iterable[str],
                 keep_arrays: bool = False) -> FrameOutcome:
        """Certify ``record`` under each configuration in ``config_ids``; never raises for a bad
        frame or a failing branch (those become error records), only for a bad configuration."""
        results: dict[str, ConfigOutcome] = {}
        base = {"index": record.index, "frame": record.name, "stamp_ns": record.stamp_ns}
        for config_id in config_ids:
            if isinstance(record, FrameError):
                results[config_id] = ConfigOutcome(error_record(base, config_id, record.message))
                continue
            results[config_id] = self._certify(record, self.configs[config_id], base, keep_arrays)
        return FrameOutcome(record.index, record.name, record.stamp_ns, results)

    def _certify(self, frame: Frame, config: EvalConfig, base: dict[str, Any],
                 keep_arrays: bool) -> ConfigOutcome:
        height, width = frame.image.shape[:2]
        self.engines(config)  # a missing model is a configuration error: it stops the run
        try:
            certifier = self.certifier(config, height, width)
        except EvaluationError as error:  # e.g. a frame too small for the patch: a bad frame
            return ConfigOutcome(error_record(base, config.config_id, str(error)))
        try:
            result = certifier.certify(frame.image)
            stats = None
            if frame.labels is not None:
                stats = frame_statistics(result.labels, result.certified, frame.labels,
                                         self.num_classes, self.ignore_index)
        except (EngineError, CoreError) as error:
            return ConfigOutcome(error_record(base, config.config_id, str(error)))
        per_frame = summarise_frame(stats) if stats is not None else {}
        record = {
            **base, "config": config.config_id, "status": "ok",
            "certified_fraction": result.certified_fraction,
            "alert": bool((~result.certified).any()),
            "alert_fraction": 1.0 - result.certified_fraction,
            "pct_certified": per_frame.get("pct_certified"),
            "accuracy": per_frame.get("accuracy"),
            "far": per_frame.get("far") if config.mode == "detection" else None,
            "latency_s": result.timings.get("total", math.fsum(result.timings.values())),
            "k": certifier.masks.k, "t": certifier.masks.t, "patch_px": list(certifier.masks.patch),
            "timings": result.timings,
            "stats": encode_statistics(stats) if stats is not None else None,
        }
        if not keep_arrays:
            return ConfigOutcome(record)
        return ConfigOutcome(record, result.labels.astype(np.int32), result.certified.copy())


def error_record(base: Mapping[str, Any], config_id: str, message: str) -> dict[str, Any]:
    """The JSONL record of a frame that could not be evaluated under ``config_id``."""
    return {**base, "config": config_id, "status": "error", "error": message}


def encode_statistics(stats: Mapping[str, Any]) -> dict[str, Any]:
    """JSON form of :func:`frame_statistics`; the confusion matrix as sparse [truth, pred, n]."""
    confusion = np.asarray(stats["confusion"])
    rows, cols = np.nonzero(confusion)
    encoded = {key: (value.tolist() if isinstance(value, np.ndarray) else value)
               for key, value in stats.items() if key != "confusion"}
    encoded["confusion"] = [[int(r), int(c), int(confusion[r, c])] for r, c in zip(rows, cols, strict=True)]
    return encoded


def decode_statistics(encoded: Mapping[str, Any], num_classes: int) -> dict[str, Any]:
    """Inverse of :func:`encode_statistics` (for resume)."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for truth, pred, count in encoded["confusion"]:
        confusion[truth, pred] += count
    return {**encoded, "confusion": confusion,
            "certified_hits": np.asarray(encoded["certified_hits"], dtype=np.int64),
            "class_pixels": np.asarray(encoded["class_pixels"], dtype=np.int64)}


@dataclass
class ConfigTotals:
    """Everything the summary needs for one configuration, rebuilt identically from the JSONL."""

    metrics: CertificationMetrics
    evaluated: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    certified_fractions: list[float] = field(default_factory=list)
    alerts: int = 0
    latencies: list[float] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def add(self, record: Mapping[str, Any]) -> None:
        """Fold one JSONL record in (ok or error)."""
        if record["status"] != "ok":
            self.errors.append({"index": record["index"], "frame": record["frame"],
                                "error": record.get("error", "")})
            return
        self.evaluated += 1
        self.certified_fractions.append(float(record["certified_fraction"]))
        self.alerts += bool(record["alert"])
        self.latencies.append(float(record["latency_s"]))
        for stage, seconds in record.get("timings", {}).items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + float(seconds)
        if record.get("stats") is not None:
            self.metrics.add_statistics(decode_statistics(record["stats"], self.metrics.num_classes))


class FrameSink(Protocol):
    """Receives each frame's outcome in frame order (example images, output bag, ...)."""

    def wants_arrays(self, index: int) -> bool:
        """Whether this frame's labels / certificates (and the frame) must be sent back."""
        ...

    def write(self, outcome: FrameOutcome) -> None:
        """Consume one frame's outcome."""
        ...

    def close(self) -> None:
        """Finish (flush files)."""
        ...


class Executor(Protocol):
    """Certifies frames and yields their outcomes in input order (see :mod:`.parallel`)."""

    def map(self, jobs: Iterator[tuple[FrameRecord, list[str], bool]]) -> Iterator[FrameOutcome]:
        """``jobs`` yields (record, configuration ids to run, keep arrays)."""
        ...

    def close(self) -> None:
        """Release workers."""
        ...


def read_records(path: Path) -> list[dict[str, Any]]:
    """Parse a frames.jsonl; a torn last line (killed mid-write) is dropped, other damage is an error."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break  # torn last line: the frame is simply evaluated again
            raise EvaluationError(f"{path}:{number} is not valid JSON ({error}); move the file away "
                                  "or use --fresh") from error
        if not isinstance(record, dict) or not {"index", "frame", "config", "status"} <= set(record):
            raise EvaluationError(f"{path}:{number} is not a frame record; use another --out or --fresh")
        records.append(record)
    return records


def json_line(record: Mapping[str, Any]) -> str:
    """One compact JSON line; NaN / inf become null so the file stays strict JSON."""
    return json.dumps(clean_json(record), separators=(",", ":"), sort_keys=False)


def clean_json(value: Any) -> Any:
    """Recursively replace non-finite floats by None and numpy scalars by Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class RunState:
    """Per-configuration totals plus the set of (frame index, configuration) pairs already done."""

    totals: dict[str, ConfigTotals]
    done: set[tuple[int, str]]
    names: dict[int, str]
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def restore(cls, records: Iterable[Mapping[str, Any]], configs: Sequence[EvalConfig],
                num_classes: int, ignore_index: int, class_names: Sequence[str]) -> RunState:
        """Rebuild the state from earlier JSONL records (ok records only; errors are retried)."""
        state = cls({c.config_id: ConfigTotals(CertificationMetrics(num_classes, ignore_index,
                                                                    list(class_names)))
                     for c in configs}, set(), {})
        for record in records:
            if record["status"] == "ok" and record["config"] in state.totals:
                state.add(record)
        return state

    def add(self, record: Mapping[str, Any]) -> None:
        """Fold one record into its configuration (checking the frame still has the same name)."""
        index, name = int(record["index"]), str(record["frame"])
        if self.names.setdefault(index, name) != name:
            raise EvaluationError(f"frame {index} was {self.names[index]!r} in the earlier run but is "
                                  f"{name!r} now: the input changed; use another --out or --fresh")
        if record["status"] == "ok":
            self.done.add((index, str(record["config"])))
        self.totals[str(record["config"])].add(record)


def evaluate_frames(records: Iterator[FrameRecord], todo: Mapping[int, list[str]], executor: Executor,
                    state: RunState, jsonl: Any, sinks: Sequence[FrameSink] = (),
                    progress: Any = None) -> None:
    """Run ``todo`` (frame index -> configuration ids) through ``executor`` and record everything.

    Records are written (and flushed) one line at a time in frame order, then folded into
    ``state``; sinks see each outcome after it is recorded. KeyboardInterrupt propagates after the
    last complete frame, leaving the JSONL consistent.
    """
    def jobs() -> Iterator[tuple[FrameRecord, list[str], bool]]:
        for record in records:
            if record.index in todo:
                yield record, todo[record.index], any(s.wants_arrays(record.index) for s in sinks)

    for outcome in executor.map(jobs()):
        for config_id in todo[outcome.index]:
            record = outcome.results[config_id].record
            jsonl.write(json_line(record) + "\n")
            jsonl.flush()
            state.add(record)
        for sink in sinks:
            sink.write(outcome)
        if progress is not None:
            progress.update(1)
