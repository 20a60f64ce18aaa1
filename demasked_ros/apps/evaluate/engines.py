"""The evaluator's engines by name: segmenters and demaskers for :class:`FrameEvaluator` workers.

What a name means is :mod:`demasked_ros.engines.factory`'s (the node and ``demasked-certify`` use
the same factory); this module adds what only the evaluator needs: names registered by tests or
plugins, picklability for worker processes, and model fingerprints for resume.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from demasked_ros.apps.evaluate.config import EvalConfig, EvaluationError
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.factory import (
    SegmenterSpec,
    make_demasker,
    make_segmenter,
    model_fingerprint,
)
from demasked_ros.engines.protocols import Demasker, Segmenter


@dataclass(frozen=True)
class EngineFactory:
    """Builds segmenters and demaskers by name; picklable, so each worker can rebuild them.

    Built-in names are :func:`~demasked_ros.engines.factory.make_segmenter`'s (``default``, model
    files read with ``class_names``, plugins) and :func:`~demasked_ros.engines.factory.make_demasker`'s
    (``default``, ``learned``, ``telea``, ``ns``, ``solid``). ``segmenters`` / ``demaskers`` add or
    override names with zero-argument factories (e.g. tests, plugins); they must be picklable for
    worker processes (module-level functions).
    """

    class_names: tuple[str, ...] = ()
    segmenters: Mapping[str, Callable[[], Segmenter]] = field(default_factory=dict)
    demaskers: Mapping[str, Callable[[], Demasker]] = field(default_factory=dict)
    intra_op_threads: int = 1
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def segmenter_spec(self, name: str) -> SegmenterSpec:
        """What :func:`make_segmenter` builds for ``name``."""
        return SegmenterSpec(name=name, class_names=self.class_names, providers=self.providers,
                             threads=self.intra_op_threads)

    def segmenter(self, name: str) -> Segmenter:
        """The segmenter called ``name``; EvaluationError when it cannot be built."""
        if name in self.segmenters:
            return self.segmenters[name]()
        try:
            return make_segmenter(self.segmenter_spec(name))
        except ImportError as error:
            raise EvaluationError(f"segmenter {name!r} is not available: {error}") from error
        except EngineError as error:
            raise EvaluationError(f"cannot load segmenter {name!r}: {error}") from error

    def fingerprint(self, config: EvalConfig) -> str:
        """Short hash of the model files behind ``config`` (changes when a model is retrained).

        Resume uses it to re-evaluate configurations whose models changed instead of mixing results.
        Files are identified as alarm calibrations identify them
        (:func:`~demasked_ros.engines.factory.model_fingerprint`); registered engines by name.
        """
        models = model_fingerprint(config.segmenter, config.demasker)
        if config.segmenter in self.segmenters:
            models["segmenter"] = f"registered:{config.segmenter}"
        else:
            models.setdefault("segmenter", config.segmenter)  # a plugin: its reference
        if config.demasker in self.demaskers:
            models["demasker"] = f"registered:{config.demasker}"
        return hashlib.sha256(json.dumps(models, sort_keys=True).encode()).hexdigest()[:16]

    def demasker(self, name: str) -> Demasker:
        """The demasker called ``name`` (see :func:`~demasked_ros.engines.factory.make_demasker`)."""
        if name in self.demaskers:
            return self.demaskers[name]()
        try:
            return make_demasker(name, threads=self.intra_op_threads)
        except (ImportError, EngineError, FileNotFoundError) as error:
            raise EvaluationError(f"demasker {name!r} is not available: {error}") from error
