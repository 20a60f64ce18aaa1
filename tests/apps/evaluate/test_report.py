"""summary.json and report.md: strict JSON, paper-style tables, sweep figure, examples."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from demasked_ros.apps.evaluate.config import EvalConfig
from demasked_ros.apps.evaluate.parallel import SerialExecutor
from demasked_ros.apps.evaluate.report import (
    ExampleWriter,
    build_summary,
    example_indices,
    fmt,
    write_report,
    write_summary,
)
from demasked_ros.apps.evaluate.runner import RunState, evaluate_frames
from demasked_ros.core.classes import CAMVID
from demasked_ros.datasets.procedural import ProceduralSource
from tests.apps.evaluate.eval_fixtures import HEIGHT, WIDTH, spec

CONFIGS = [
    EvalConfig("recovery", "column", patch, demasker="solid", segmenter="rule") for patch in (0.01, 0.02)
] + [
    EvalConfig("recovery", "column", 0.02, demasker="telea", segmenter="rule"),
    EvalConfig("detection", "row", 0.03, demasker="solid", segmenter="rule"),
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    source = ProceduralSource(3, seed=5, height=HEIGHT, width=WIDTH)
    state = RunState.restore([], CONFIGS, CAMVID.num_classes, CAMVID.ignore_index, CAMVID.names)
    writer = ExampleWriter(out, [1], CAMVID)
    todo = {i: [c.config_id for c in CONFIGS] for i in range(3)}
    evaluate_frames(source.iter_records(), todo, SerialExecutor(spec(CONFIGS)), state, io.StringIO(),
                    [writer])
    summary = build_summary(CONFIGS, state, {"input": "procedural", "complete": True, "frames_selected": 3})
    return out, summary


def test_summary_is_strict_json_with_the_issue_keys(evaluated):
    out, summary = evaluated
    path = write_summary(out, summary)

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    loaded = json.loads(path.read_text(), parse_constant=refuse)
    for entry in loaded["configurations"].values():
        for key in ("mIoU", "mR", "cmR", "big_mR", "big_cmR", "pct_certified", "FAR", "frames", "seconds"):
            assert key in entry
        assert entry["frames"] == 3 and entry["parameters"]["mode"] in ("recovery", "detection")
        assert 0 <= entry["pct_certified"] <= 100 and 0 <= entry["mR"] <= 100
    recovery, detection = loaded["configurations"][CONFIGS[0].config_id], loaded["configurations"][
        CONFIGS[3].config_id]
    assert recovery["FAR"] is None and 0 <= detection["FAR"] <= 100


def test_report_has_paper_tables_sweep_and_examples(evaluated):
    out, summary = evaluated
    report = write_report(out, summary).read_text()
    assert "| mIoU | big mR | big cmR | all mR | all cmR | %C | FAR ↓ |" in report
    assert report.count("| recovery | ") >= 3 and "| detection | 3 % | row | solid |" in report
    assert "Table 7" in report and "✗ (solid fill)" in report  # solid vs telea at 2 %
    assert "patch_sweep.png" in report  # 1 % and 2 % solid differ only in the patch
    assert "| road | " in report and " / " in report.split("## Per-class recall / certified recall")[1]
    assert (out / "figures" / "patch_sweep.png").stat().st_size > 1000
    examples = sorted((out / "examples").glob("*.png"))
    assert len(examples) == len(CONFIGS)
    import cv2

    panel = cv2.imread(str(examples[0]))
    assert panel.shape == (HEIGHT, 4 * WIDTH, 3)
    assert all(f"examples/{png.name}" in report for png in examples)


def test_example_indices_are_spread_over_the_selection():
    assert example_indices([0, 5, 10, 15, 20], 3) == [0, 10, 20]
    assert example_indices([3], 4) == [3]
    assert example_indices([1, 2], 0) == []


@pytest.mark.parametrize(("value", "text"), [(None, "N/A"), (math.nan, "N/A"), (12.345, "12.35"), (3, "3")])
def test_table_cells(value, text):
    assert fmt(value) == text


def test_partial_runs_are_marked(evaluated, tmp_path):
    _, summary = evaluated
    report = write_report(tmp_path, dict(summary, complete=False), figures=False).read_text()
    assert "partial (interrupted)" in report
    assert not (tmp_path / "figures").exists()
    assert np.isfinite([e["mIoU"] for e in summary["configurations"].values()]).all()


def test_paper_numbers_are_placed_next_to_matching_configurations(tmp_path):
    configs = [EvalConfig("recovery", "column", 0.005, segmenter="rule"),
               EvalConfig("recovery", "column", 0.005, demasker="solid", segmenter="rule"),
               EvalConfig("recovery", "column", 0.02, segmenter="rule")]
    state = RunState.restore([], configs, CAMVID.num_classes, CAMVID.ignore_index, CAMVID.names)
    summary = build_summary(configs, state, {"complete": True})
    report = write_report(tmp_path, summary, figures=False, configs=configs).read_text()
    section = report.split("## Next to the paper's numbers")[1].split("\n## ")[0]
    assert "paper: ADE20K BEiT-B (T1) | 24.92 | 60.77 | 41.26 | 29.84 | 12.98 | 46.22 | N/A |" in section
    assert "paper: ADE20K Swin (T7) | 1.10 | 15.09" in section  # the no-demasking ablation row
    assert "2 %" not in section
