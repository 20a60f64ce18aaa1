"""Fold table: per held-out sequence rows from the product's certifier and metric accumulator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("torch", reason="training tests need torch (requirements/train.txt)")

from demasked_ros.training import cli, fold_eval
from tests.tiny_models import write_conv_model
from tests.training.test_folds import write_table
from tests.training.tiny_torch import write_tiny_camvid


@pytest.fixture(scope="module")
def tiny_folds(tmp_path_factory):
    root = write_tiny_camvid(tmp_path_factory.mktemp("folds"), frames=3)
    rows = [("S1", "train", "tiny_000.png"), ("S1", "val", "tiny_000.png"), ("S2", "train", "tiny_001.png"),
            ("S2", "train", "tiny_002.png"), ("S2", "val", "tiny_001.png"), ("S2", "val", "tiny_002.png")]
    write_table(root, rows)
    model = write_conv_model(root / "seg.onnx", num_classes=11)
    return root, model


def test_rows_per_held_out_sequence_and_unweighted_mean(tiny_folds, tmp_path, capsys):
    root, model = tiny_folds
    out = tmp_path / "folds.json"
    args = ["evaluate-folds", "--data", str(root), "--segmenter", str(model), "--demasker", "telea",
            "--folds", "S1", "S2", "--out", str(out)]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "NOT held-out figures" in text  # one model for every fold is flagged
    data = json.loads(out.read_text())
    rows = {r["fold"]: r for r in data["folds"]}
    assert rows["S1"]["frames"] == 2 and rows["S2"]["frames"] == 4  # train+val frames of the sequence
    for column in fold_eval.COLUMNS:
        values = [rows["S1"][column], rows["S2"][column]]
        if not any(math.isnan(v) for v in values):
            assert data["mean"][column] == pytest.approx(np.mean(values))  # each drive counts once
        assert column in text
    assert 0 <= rows["S2"]["recovery %C"] <= 100 and 0 <= rows["S2"]["detection FAR"] <= 100
    # a rerun resumes from the JSON (no re-evaluation): same rows
    assert cli.main(args) == 0
    assert json.loads(out.read_text())["folds"] == data["folds"]


def test_fold_row_reads_the_metric_accumulators():
    from demasked_ros.core.classes import CAMVID
    from demasked_ros.core.metrics import CertificationMetrics

    truth = np.full((4, 4), 9, np.uint8)  # all pedestrian
    pred = truth.copy()
    certified = np.zeros((4, 4), bool)
    certified[:2] = True
    rec = CertificationMetrics(11, CAMVID.ignore_index, CAMVID.names)
    det = CertificationMetrics(11, CAMVID.ignore_index, CAMVID.names)
    rec.add(pred, np.ones((4, 4), bool), truth)
    det.add(pred, certified, truth)
    row = fold_eval.fold_row("X", rec, det)
    assert row["recovery %C"] == 100 and row["detection %C"] == 50 and row["detection FAR"] == 50
    assert row["cert. recall pedestrian"] == 50 and math.isnan(row["cert. recall car"])
    assert "| X | 1 |" in fold_eval.format_table([row])


def test_missing_model_gives_exit_code_2(tiny_folds, capsys):
    root, _ = tiny_folds
    assert cli.main(["evaluate-folds", "--data", str(root), "--segmenter", "nowhere/{fold}.onnx",
                     "--folds", "0001TP"]) == 2
