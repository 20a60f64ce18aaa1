"""Issue 11 node parts without ROS: auto working size, memory budget, certifier cache, probe, identity."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from demasked_ros.apps.node.models import load_models
from demasked_ros.apps.node.params import config_from_values
from demasked_ros.apps.node.resolution import CertifierCache, build_frame_certifier, plan_masks
from demasked_ros.engines.certifier import ChunkedExecutor
from demasked_ros.engines.errors import EngineError

PLUGIN = "tests.apps.node.plugins:colour_segmenter"


def config(**values):
    return config_from_values({"segmenter_plugin": PLUGIN, "demasker": "solid", **values})


def test_defaults_bound_memory_and_working_size():
    cfg = config_from_values({})
    assert cfg.working_max_pixels == 480 * 360 and cfg.memory_budget_bytes == 1_500_000_000
    assert cfg.batch_probe == "fallback"
    assert config(resize_interpolation="linear").resize_interpolation == "linear"  # auto size uses it
    with pytest.raises(ValueError, match="no effect"):
        config(resize_interpolation="linear", working_max_pixels=0)


@pytest.mark.parametrize(("frame", "values", "working"), [
    ((2160, 3840), {}, (311, 554)),
    ((1080, 1920), {"working_max_pixels": 640 * 480}, (415, 739)),
    ((360, 480), {}, None),
    ((2160, 3840), {"working_max_pixels": 0}, None),
    ((2160, 3840), {"working_height": 270}, (270, 480)),  # explicit size overrides the budget
])
def test_automatic_working_size_keeps_the_aspect_and_widens_the_patch(frame, values, working):
    plan = plan_masks(config(**values), *frame)
    if working is None:
        assert plan.resizer is None and plan.working_hw == frame
        return
    assert plan.working_hw == working
    assert plan.working_patch[0] >= plan.patch[0] * working[0] / frame[0]  # widened, never shrunk
    assert plan.masks.height * plan.masks.width <= max(values.get("working_max_pixels") or 0, 480 * 360,
                                                       working[0] * working[1])


def test_executor_gets_the_memory_budget_and_cancel_reaches_it():
    cfg = config(memory_budget=0.2, expected_height=120, expected_width=160)
    models = load_models(cfg)
    certifier = build_frame_certifier(cfg, models, 120, 160)
    executor = certifier.certifier.executor
    assert isinstance(executor, ChunkedExecutor) and executor.memory_budget == 200_000_000
    event = threading.Event()
    event.set()
    with pytest.raises(EngineError, match="cancelled"):
        certifier.certify(np.zeros((120, 160, 3), np.uint8), cancel=event)


def test_certifier_cache_keeps_the_last_sizes():
    cfg = config()
    models = load_models(cfg)
    cache = CertifierCache(size=2)
    for size in ((60, 80), (90, 120), (60, 80)):
        if cache.get(*size) is None:
            cache.put(build_frame_certifier(cfg, models, *size))
    assert cache.built == 2
    cache.put(build_frame_certifier(cfg, models, 30, 40))  # evicts (90, 120), the least recent
    assert cache.get(90, 120) is None and cache.get(60, 80) is not None and cache.built == 3


def test_model_identity_has_no_path_and_the_probe_verdict_is_reported():
    models = load_models(config_from_values({"demasker": "solid"}))
    assert models.model_name.startswith("segmenter.onnx sha256:") and "/" not in models.model_name
    assert ("batch_probe", "passed") in models.key_values()
    plugin = load_models(config())
    assert plugin.model_name == PLUGIN


def test_batch_dependent_plugin_falls_back_to_one_branch_or_is_refused():
    name = "tests.apps.node.plugins:batch_normalised_segmenter"
    models = load_models(config(segmenter_plugin=name))
    assert models.chunk_size == 1 and models.executor is None
    assert ("batch_probe", "failed") in models.key_values()
    certifier = build_frame_certifier(config(segmenter_plugin=name), models, 60, 80)
    assert certifier.certifier.executor.chunk_size == 1
    with pytest.raises(EngineError, match="batch-dependent"):
        load_models(config(segmenter_plugin=name, batch_probe="refuse"))
    assert load_models(config(segmenter_plugin=name, batch_probe="off")).chunk_size is None
