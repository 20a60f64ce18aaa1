"""Shared helpers for the evaluator tests: a tiny deterministic CamVid-class segmenter and sources.

Module-level functions, so spawned worker processes and Ray actors can unpickle them by reference.
"""

from __future__ import annotations

import numpy as np

from demasked_ros.apps.evaluate.config import EvalConfig
from demasked_ros.apps.evaluate.engines import EngineFactory
from demasked_ros.apps.evaluate.parallel import EvaluatorSpec
from demasked_ros.core.classes import CAMVID
from demasked_ros.engines.segmenters import CallableSegmenter

HEIGHT, WIDTH = 48, 64


def brightness_rule(images: np.ndarray) -> np.ndarray:
    """A local, deterministic rule: class = (brightness + a bit of colour) quantised to 11 classes."""
    pixels = images.astype(np.int64)
    score = pixels.sum(axis=-1) + 2 * pixels[..., 2] - pixels[..., 0]
    return np.clip(score // 70, 0, 10).astype(np.int32)


def rule_segmenter() -> CallableSegmenter:
    """The rule above as a CamVid-class segmenter."""
    return CallableSegmenter(brightness_rule, CAMVID.names)


def rule_factory() -> EngineFactory:
    """Engines for tests: the rule segmenter under the name ``rule``."""
    return EngineFactory(class_names=CAMVID.names, segmenters={"rule": rule_segmenter})


def small_configs() -> list[EvalConfig]:
    """A recovery, a detection and a no-demasking configuration on 48 x 64 images."""
    return [
        EvalConfig("recovery", "column", 0.02, demasker="solid", segmenter="rule"),
        EvalConfig("recovery", "row", 0.02, demasker="telea", segmenter="rule"),
        EvalConfig("detection", "column", 0.03, demasker="solid", segmenter="rule"),
    ]


def spec(configs: list[EvalConfig] | None = None) -> EvaluatorSpec:
    """An evaluator recipe over CamVid classes with the test engines."""
    return EvaluatorSpec(tuple(configs or small_configs()), rule_factory(), CAMVID.num_classes,
                         CAMVID.ignore_index)
