"""Evaluation configurations: grids, config files, presets, DRS-S masks."""

from __future__ import annotations

import json

import pytest

from demasked_ros.apps.evaluate.config import (
    PRESETS,
    EvalConfig,
    EvaluationError,
    GridSpec,
    configs_from_mapping,
    load_config_file,
)
from demasked_ros.core.geometry import masks_affected_per_position


def test_grid_skips_schemes_of_the_other_mode_and_duplicates():
    configs = GridSpec(modes=["recovery", "detection"], schemes=["column", "3-mask", "block"],
                       patches=[0.005, 0.005]).expand()
    assert [c.config_id for c in configs] == [
        "recovery-column-0.5pct-default-default", "recovery-3-mask-0.5pct-default-default",
        "detection-column-0.5pct-default-default", "detection-block-0.5pct-default-default"]


def test_invalid_values_are_refused_with_the_choices():
    with pytest.raises(EvaluationError, match="3-mask"):
        EvalConfig("detection", "3-mask", 0.01)
    with pytest.raises(EvaluationError, match="fraction"):
        EvalConfig("recovery", "column", 5.0)
    with pytest.raises(EvaluationError, match="demasker"):
        EvalConfig("recovery", "column", 0.01, demasker="magic")


def test_config_file_precedence_and_pixel_patches(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"defaults": {"demasker": "ns"}, "configurations": [
        {"mode": "recovery", "scheme": ["column", "row"], "patch": [20, 30]},
        {"mode": "detection", "scheme": "column", "patch": [0.01, 0.02], "demasker": "solid"}]}))
    configs = load_config_file(path, {"segmenter": "model.onnx", "demasker": "telea"})
    assert [c.config_id for c in configs] == [
        "recovery-column-20x30px-ns-model", "recovery-row-20x30px-ns-model",
        "detection-column-1pct-solid-model", "detection-column-2pct-solid-model"]
    assert configs[0].patch == (20, 30)


def test_yaml_config_and_unknown_keys(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("configurations:\n  - {mode: recovery, scheme: column, patch: 0.01, k: 7}\n")
    (config,) = load_config_file(path)
    assert config.k == 7 and config.masks(36, 48).k == 7
    with pytest.raises(EvaluationError, match="unknown keys"):
        configs_from_mapping({"configurations": [{"mode": "recovery", "scheme": "column", "patch": 0.01,
                                                  "colour": "red"}]})
    with pytest.raises(EvaluationError, match="not found"):
        load_config_file(tmp_path / "missing.yaml")


def test_presets_cover_table1_ablation_and_sweep():
    table1 = load_config_file("table1")
    assert {(c.mode, c.scheme, c.patch) for c in table1} == {
        ("detection", "column", 0.01), ("detection", "row", 0.01), ("recovery", "column", 0.005),
        ("recovery", "row", 0.005), ("recovery", "3-mask", 0.005), ("recovery", "4-mask", 0.005)}
    ablation = load_config_file("ablation", {"demasker": "learned"})
    assert {c.demasker for c in ablation} == {"solid"}  # the ablations keep their solid fill
    sweep = load_config_file("sweep")
    assert max(c.patch for c in sweep if c.mode == "recovery") == 0.02
    assert max(c.patch for c in sweep if c.mode == "detection") == 0.05
    assert set(PRESETS) >= {"table1", "ablation", "demaskers", "sweep", "paper"}
    paper = load_config_file("paper", {"demasker": "learned"})
    assert len(paper) == len({c.config_id for c in paper}) == 23
    assert {c.demasker for c in paper} == {"learned", "solid", "telea", "ns"}


def test_drs_s_masks_are_sound_column_bands_without_demasking():
    config = EvalConfig("recovery", "drs-s", 0.005, demasker="telea")
    assert config.demasker == "solid" and config.method == "DRS-S"
    masks = config.masks(360, 480)
    assert masks.k == 23 and (masks.visible.sum(axis=2) == 39).all()
    assert masks_affected_per_position(masks).max() == masks.t
    assert masks.k > 2 * masks.t


def test_a_patch_that_does_not_fit_is_an_evaluation_error():
    with pytest.raises(EvaluationError, match="does not fit"):
        EvalConfig("recovery", "column", (40, 40)).masks(30, 30)
