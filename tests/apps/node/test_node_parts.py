"""The node's ROS-free parts: parameter validation, alert regions, keep-latest worker, models."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from demasked_ros.apps.node.params import PARAMETERS, NodeConfigError, config_from_values, defaults_yaml
from demasked_ros.apps.node.resolution import plan_masks
from demasked_ros.apps.node.worker import LatestFrameWorker
from demasked_ros.core.classes import CAMVID, class_info_for, palette
from demasked_ros.engines.factory import make_executor
from demasked_ros.rosio.regions import alert_regions


def test_defaults_validate_and_yaml_lists_every_parameter():
    config = config_from_values({})
    assert (config.mode, config.scheme, config.k, config.expected_size) == ("recovery", "column", None, None)
    text = defaults_yaml()
    assert text.startswith("demasked_ros:\n  ros__parameters:\n")
    for spec in PARAMETERS:
        assert f"\n    {spec.name}: " in text


@pytest.mark.parametrize(("values", "message"), [
    ({"mode": "x"}, "not one of"),
    ({"scheme": "row", "mode": "detection", "n_patches": 2}, "n_patches > 1"),
    ({"mode": "detection", "scheme": "3-mask"}, "not valid in detection"),
    ({"patch_height": 10}, "both patch_height and patch_width"),
    ({"k": 4, "scheme": "column"}, "K must be >= 2*N*T+1 = 5"),
    ({"k": 6, "scheme": "column", "n_patches": 2}, "= 9"),
    ({"mode": "detection", "k": 3, "band_width": 40}, "either k or band_width"),
    ({"band_width": 40}, "detection mode only"),
    ({"threads": 0}, "outside"),
    ({"threads": 1.5}, "must be an integer"),
    ({"publish_overlay": 1}, "true or false"),
    ({"std": [1.0, 0.0, 1.0]}, "std positive"),
    ({"providers": []}, "at least one"),
    ({"segmenter_plugin": "nocolon"}, "module:function"),
    ({"expected_height": 10, "expected_width": 10, "patch_fraction": 1.0, "patch_height": 11,
      "patch_width": 11}, "does not fit"),
    ({"bogus": 1}, "unknown parameters"),
])
def test_invalid_values_are_named_in_the_error(values, message):
    with pytest.raises(NodeConfigError, match=message.replace("*", r"\*").replace("+", r"\+")):
        config_from_values(values)


def test_mask_sets_follow_the_config():
    config = config_from_values({"scheme": "3-mask", "patch_height": 20, "patch_width": 30})
    masks = config.spec.masks(100, 120)
    assert (masks.mode, masks.k, masks.t, masks.patch) == ("recovery", 7, 3, (20, 30))
    detection = config_from_values({"mode": "detection", "scheme": "row", "band_width": 50,
                                    "patch_height": 20, "patch_width": 20}).spec.masks(100, 120)
    assert detection.mode == "detection" and detection.band == (50, 120)
    explicit = config_from_values({"patch_fraction": 0.5}).spec.masks(100, 120, patch=(7, 9))
    assert explicit.patch == (7, 9)  # an explicit (widened) patch overrides the config's spec
    with pytest.raises(NodeConfigError, match="cannot build masks for a 10x10 frame"):
        plan_masks(config_from_values({"patch_height": 20, "patch_width": 20}), 10, 10)


def test_executor_falls_back_to_cpu_without_a_gpu(warning_log):
    log = warning_log
    executor, name = make_executor("cuda", None, log)
    assert executor is None and name.startswith("cpu-chunked") and "cuda unavailable" in name
    assert log.lines and "falling back to the CPU executor" in log.lines[0]
    assert make_executor("cpu", None, log)[1] == "cpu-chunked(chunk_size=K)"


def test_class_info_uses_camvid_colours_or_a_stable_palette():
    info, ignore = class_info_for(CAMVID.names)
    assert info is CAMVID and ignore == 11
    info, ignore = class_info_for(("a", "b", "c"))
    assert info.colors == palette(3) == palette(3) and ignore == -1
    assert len(set(palette(20))) == 20


def test_alert_regions_keep_large_components_largest_first():
    mask = np.zeros((50, 60), bool)
    mask[5:15, 5:25] = True  # 200 px
    mask[30:45, 40:55] = True  # 225 px
    mask[0, 59] = True  # a speck
    regions = alert_regions(mask, min_area=10)
    assert [(r.x, r.y, r.width, r.height, r.area) for r in regions] == [(40, 30, 15, 15, 225),
                                                                         (5, 5, 20, 10, 200)]
    assert len(alert_regions(mask, min_area=1)) == 3
    assert alert_regions(mask, min_area=1, max_regions=1)[0].area == 225
    assert alert_regions(np.zeros((4, 4), bool), 1) == []
    diagonal = np.eye(5, dtype=bool)
    assert alert_regions(diagonal, 5)[0].area == 5  # 8-connectivity


def test_worker_processes_only_the_newest_item_and_counts_drops():
    gate = threading.Event()
    seen, dropped, errors = [], [], []

    def process(item):
        gate.wait(5)
        if item == "bad":
            raise RuntimeError("boom")
        seen.append(item)

    worker = LatestFrameWorker(process, lambda item, error: errors.append((item, str(error))), dropped.append)
    assert not worker.submit("ignored")  # not started
    worker.start()
    worker.submit(1)
    deadline = time.monotonic() + 5
    while not worker.busy and time.monotonic() < deadline:
        time.sleep(0.005)
    for item in (2, 3, "bad"):
        worker.submit(item)
    worker.submit(4)
    gate.set()
    deadline = time.monotonic() + 5
    while worker.processed < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert seen == [1, 4] and dropped == [2, 3, "bad"] and worker.dropped == 3
    worker.submit("bad")
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.005)
    assert errors == [("bad", "boom")]
    worker.submit(5)
    assert worker.stop(timeout=5)
    assert seen[-1] == 5 or worker.dropped == 4  # processed or dropped, never lost silently
