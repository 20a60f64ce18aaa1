"""One-step training runs of the segmenter: checkpoints, resume, ONNX export, CLI dispatch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="training tests need torch (requirements/train.txt)")

from demasked_ros.training import cli, segmenter_train

CAMVID = Path(os.environ.get(
    "DEMASKED_CAMVID", Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"))
needs_camvid = pytest.mark.skipif(not (CAMVID / "train").is_dir(),
                                  reason=f"CamVid not found at {CAMVID} (set DEMASKED_CAMVID)")

TINY = ["--max-frames", "2", "--max-steps", "1", "--batch-size", "2", "--crop", "64", "96",
        "--widths", "8", "16", "16", "--decoder-width", "8", "--no-progress", "--warmup-iters", "1"]


@pytest.mark.camvid
@needs_camvid
def test_one_step_run_checkpoints_resumes_and_exports_a_matching_onnx_model(tmp_path):
    import onnxruntime as ort

    run = tmp_path / "run"
    base = ["--data", str(CAMVID), "--run-dir", str(run), *TINY]
    assert cli.main(["segmenter", *base, "--epochs", "1"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0]
    assert np.isfinite(records[0]["loss"]) and 0 <= records[0]["val"]["miou"] <= 100
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()

    onnx_path = tmp_path / "seg.onnx"
    assert segmenter_train.main([*base, "--epochs", "2", "--resume"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]  # resumed at epoch 1, did not redo epoch 0
    assert records[1]["iteration"] == 2

    result = segmenter_train.export_onnx(run / "best.pt", onnx_path)
    assert result["max_abs_diff"] < 1e-3
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    labels, logits = session.run(None, {"image": np.zeros((3, 3, 36, 52), np.float32)})
    assert logits.shape == (3, 11, 36, 52)  # dynamic batch and size
    assert labels.shape == (3, 36, 52) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, logits.argmax(1))
    assert session.get_modelmeta().custom_metadata_map["channel_order"] == "RGB"


def test_missing_data_gives_exit_code_2(tmp_path, caplog):
    missing = str(tmp_path / "nowhere")
    code = segmenter_train.main(["--data", missing, "--run-dir", str(tmp_path / "r"), *TINY])
    assert code == 2
    assert "not found" in caplog.text


def test_cli_rejects_unknown_subcommands_and_prints_usage(capsys):
    assert cli.main(["segment"]) == 2
    assert "unknown subcommand" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "segmenter" in capsys.readouterr().out


@pytest.mark.camvid
@needs_camvid
def test_a_fold_run_trains_without_the_held_out_sequence_and_exports_its_last_epoch(tmp_path, caplog):
    import logging

    run = tmp_path / "run"
    onnx_path = tmp_path / "fold.onnx"
    with caplog.at_level(logging.INFO, logger="demasked_ros.training.segmenter"):
        assert segmenter_train.main(["--data", str(CAMVID), "--run-dir", str(run), *TINY, "--epochs", "1",
                                     "--fold", "0001TP", "--export", str(onnx_path)]) == 0
    assert "fold 0001TP: train 406 frames, held out 62 frames" in caplog.text
    assert onnx_path.is_file() and not (run / "best.pt").exists()  # nothing picked on the held-out drive
    import torch

    last = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert last["config"]["fold"] == "0001TP"
    with pytest.raises(SystemExit):
        segmenter_train.build_parser().parse_args(["--fold", "9999XX"])
