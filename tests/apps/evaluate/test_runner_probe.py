"""Issue 11: the evaluator probes its models for batch independence and falls back to one branch."""

import logging

import numpy as np

from demasked_ros.apps.evaluate.config import EvalConfig
from demasked_ros.apps.evaluate.engines import EngineFactory
from demasked_ros.apps.evaluate.runner import FrameEvaluator
from demasked_ros.core.classes import CAMVID
from demasked_ros.engines.segmenters import CallableSegmenter
from tests.apps.evaluate.eval_fixtures import brightness_rule, rule_segmenter


def batch_normalised(images: np.ndarray) -> np.ndarray:
    centred = images.astype(np.int32) - images.mean(axis=(0, 1, 2), keepdims=True).astype(np.int32) + 128
    return brightness_rule(np.clip(centred, 0, 255).astype(np.uint8))


def batch_segmenter() -> CallableSegmenter:
    return CallableSegmenter(batch_normalised, CAMVID.names)


def test_batch_dependent_models_run_one_branch_per_call(caplog):
    factory = EngineFactory(class_names=CAMVID.names, segmenters={"rule": rule_segmenter,
                                                                  "batchy": batch_segmenter})
    clean = EvalConfig("recovery", "column", 0.02, demasker="solid", segmenter="rule")
    batchy = EvalConfig("recovery", "column", 0.02, demasker="solid", segmenter="batchy")
    evaluator = FrameEvaluator([clean, batchy], factory, CAMVID.num_classes, CAMVID.ignore_index)
    with caplog.at_level(logging.WARNING):
        assert evaluator.certifier(batchy, 48, 64).executor.chunk_size == 1
    assert "one branch per call" in caplog.text
    assert evaluator.certifier(clean, 48, 64).executor.chunk_size is None
    assert evaluator.probes[("rule", "solid")].independent
    assert not evaluator.probes[("batchy", "solid")].independent
