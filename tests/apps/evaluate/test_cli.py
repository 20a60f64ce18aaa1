"""demasked-eval end to end: bag round trip (mcap, sqlite3), output bag, resume, Ctrl-C, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from demasked_ros.apps.evaluate import cli, runner
from demasked_ros.apps.evaluate.make_bag import main as make_bag
from demasked_ros.apps.evaluate.output_bag import NODE_TOPICS
from demasked_ros.core.classes import CAMVID
from demasked_ros.datasets.procedural import ProceduralSource
from demasked_ros.rosio.bagio import (
    CERTIFICATION_STATUS_TYPE,
    BagFrameSource,
    BagWriter,
    package_typestore,
)
from tests.tiny_models import write_conv_model

FRAMES = 4
PROCEDURAL = f"procedural:{FRAMES}:0:48x64"
METRICS = ("mIoU", "mR", "cmR", "big_mR", "big_cmR", "pct_certified", "FAR", "frames")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(write_conv_model(tmp_path_factory.mktemp("model") / "tiny11.onnx", num_classes=11))


def eval_args(input_: str | Path, out: Path, model: str, *extra: str) -> list[str]:
    return [str(input_), "--out", str(out), "--segmenter", model, "--mode", "recovery", "detection",
            "--scheme", "column", "--patch", "0.03", "--demasker", "solid", "--quiet", "--no-figures",
            "--examples", "1", *extra]


def metrics_of(out: Path) -> dict[str, dict]:
    summary = json.loads((out / "summary.json").read_text())
    return {cid: {k: entry[k] for k in METRICS} for cid, entry in summary["configurations"].items()}


def make_procedural_bag(path: Path, storage: str) -> Path:
    rc = make_bag([str(path), "--procedural", str(FRAMES), "--height", "48", "--width", "64",
                   "--storage", storage, "--quiet"])
    assert rc == 0
    return path


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory) -> dict[str, dict]:
    """The procedural frames evaluated straight from the generator."""
    out = tmp_path_factory.mktemp("reference")
    assert cli.main(eval_args(PROCEDURAL, out, model)) == 0
    return metrics_of(out)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip_gives_the_generator_numbers(storage, model, reference, tmp_path):
    bag = make_procedural_bag(tmp_path / f"drive_{storage}", storage)
    out = tmp_path / "eval"
    assert cli.main(eval_args(bag, out, model, "--output-bag", "--bag-storage", storage)) == 0
    assert metrics_of(out) == reference
    assert all(entry["frames"] == FRAMES for entry in metrics_of(out).values())
    report = (out / "report.md").read_text()
    assert "| recovery | 3 % | column | solid |" in report
    assert list((out / "examples").glob("*.png"))

    from rosbags.rosbag2 import Reader

    with Reader(out / cli.OUTPUT_BAG) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        stamps: dict[str, list[int]] = {}
        alerts = []
        for connection, stamp, raw in reader.messages():
            stamps.setdefault(connection.topic, []).append(stamp)
            if connection.topic == "/demasked_ros/alert":
                alerts.append(package_typestore().deserialize_cdr(raw, connection.msgtype))
    assert set(topics) == set(NODE_TOPICS.values())
    assert topics["/demasked_ros/alert"] == CERTIFICATION_STATUS_TYPE
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    recovery = [r for r in records if r["config"] == "recovery-column-3pct-solid-tiny11"]
    assert [a.scheme for a in alerts] == ["column"] * FRAMES and alerts[0].k == recovery[0]["k"] > 1
    fractions = [r["certified_fraction"] for r in recovery]
    assert [a.certified_fraction for a in alerts] == pytest.approx(fractions, abs=1e-6)
    assert [a.alert for a in alerts] == [r["alert"] for r in recovery]
    expected = [frame.stamp_ns for frame in BagFrameSource(bag)]
    assert all(sorted(values) == expected for values in stamps.values())


def test_resume_after_a_partial_run_matches_a_full_run(model, reference, tmp_path):
    out = tmp_path / "eval"
    assert cli.main(eval_args(PROCEDURAL, out, model, "--limit", "2")) == 0
    assert metrics_of(out)["recovery-column-3pct-solid-tiny11"]["frames"] == 2
    assert cli.main(eval_args(PROCEDURAL, out, model)) == 0
    lines = (out / "frames.jsonl").read_text().splitlines()
    keys = [(json.loads(line)["index"], json.loads(line)["config"]) for line in lines]
    assert len(keys) == len(set(keys)) == FRAMES * 2
    assert metrics_of(out) == reference


def test_ctrl_c_leaves_consistent_files_and_a_rerun_completes(model, reference, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    real = runner.FrameEvaluator.evaluate
    calls = {"n": 0}

    def interrupt_third(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(runner.FrameEvaluator, "evaluate", interrupt_third)
    assert cli.main(eval_args(PROCEDURAL, out, model)) == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False
    assert all(entry["frames"] == 2 for entry in summary["configurations"].values())
    assert len([json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]) == 4
    monkeypatch.setattr(runner.FrameEvaluator, "evaluate", real)
    assert cli.main(eval_args(PROCEDURAL, out, model)) == 0
    assert json.loads((out / "summary.json").read_text())["complete"] is True
    assert metrics_of(out) == reference


def test_corrupt_bag_is_a_clear_error(model, tmp_path, capsys):
    bag = make_procedural_bag(tmp_path / "drive", "mcap")
    for storage_file in bag.glob("*.mcap"):
        storage_file.write_bytes(b"\x00garbage" * 100)
    assert cli.main(eval_args(bag, tmp_path / "eval", model)) == 2
    assert "bag" in capsys.readouterr().err.lower()


def test_missing_input_and_bad_configuration_exit_2(model, tmp_path, capsys):
    assert cli.main(eval_args(tmp_path / "nothing", tmp_path / "a", model)) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(eval_args(PROCEDURAL, tmp_path / "c", str(tmp_path / "missing.onnx"))) == 2
    assert "missing.onnx" in capsys.readouterr().err
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"configurations": [{"mode": "recovery", "scheme": "diagonal",
                                                      "patch": 0.01}]}))
    assert cli.main([PROCEDURAL, "--out", str(tmp_path / "b"), "--config", str(config), "--quiet"]) == 2
    assert "diagonal" in capsys.readouterr().err


def test_bad_frames_are_reported_and_exit_1(model, tmp_path):
    source = ProceduralSource(3, seed=1, height=48, width=64)
    bag = tmp_path / "bad_labels"
    with BagWriter(bag, "mcap", class_info=CAMVID) as writer:
        for frame in source:
            writer.write_image("/camera/image", frame.stamp_ns, frame.image)
            labels = frame.labels if frame.index != 1 else np.zeros((10, 10), np.uint8)
            writer.write_labels("/camera/labels", frame.stamp_ns, labels)
    out = tmp_path / "eval"
    assert cli.main(eval_args(bag, out, model)) == 1
    summary = json.loads((out / "summary.json").read_text())
    for entry in summary["configurations"].values():
        assert entry["errors"] == 1 and entry["frames"] == 2
        assert entry["error_frames"][0]["index"] == 1
    assert "Frames that failed" in (out / "report.md").read_text()


def test_config_file_with_the_drs_baseline(model, tmp_path):
    config = tmp_path / "grid.json"
    config.write_text(json.dumps({
        "defaults": {"segmenter": model, "demasker": "telea"},
        "configurations": [{"mode": "recovery", "scheme": ["column", "drs-s"], "patch": 0.02},
                           {"mode": "recovery", "scheme": "column", "patch": 0.02, "demasker": "solid"}]}))
    out = tmp_path / "eval"
    assert cli.main([PROCEDURAL, "--out", str(out), "--config", str(config), "--quiet", "--no-figures"]) == 0
    summary = json.loads((out / "summary.json").read_text())["configurations"]
    assert set(summary) == {"recovery-column-2pct-telea-tiny11", "recovery-drs-s-2pct-solid-tiny11",
                            "recovery-column-2pct-solid-tiny11"}
    assert summary["recovery-drs-s-2pct-solid-tiny11"]["method"] == "DRS-S"
    report = (out / "report.md").read_text()
    assert "Table 10" in report and "Table 7" in report


def test_a_retrained_model_is_re_evaluated_not_mixed(tmp_path, capsys):
    model = str(write_conv_model(tmp_path / "model.onnx", num_classes=11, seed=0))
    out = tmp_path / "eval"
    assert cli.main(eval_args(PROCEDURAL, out, model, "--limit", "2")) == 0
    write_conv_model(tmp_path / "model.onnx", num_classes=11, seed=1)  # "retrained" in place
    assert cli.main(eval_args(PROCEDURAL, out, model)) == 0
    assert "changed since the earlier run" in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    assert cli.main(eval_args(PROCEDURAL, fresh, model)) == 0
    assert metrics_of(out) == metrics_of(fresh)
    assert len((out / "frames.jsonl").read_text().splitlines()) == FRAMES * 2


def test_a_bag_without_labels_still_gives_certification_statistics(model, tmp_path):
    bag = tmp_path / "unlabelled"
    assert make_bag([str(bag), "--procedural", "2", "--height", "48", "--width", "64", "--no-labels",
                     "--quiet"]) == 0
    out = tmp_path / "eval"
    assert cli.main(eval_args(bag, out, model)) == 0
    for entry in json.loads((out / "summary.json").read_text())["configurations"].values():
        assert entry["frames"] == 0 and entry["frames_evaluated"] == 2 and entry["mIoU"] is None
        assert 0 <= entry["certified_pixels_pct"] <= 100 and entry["latency_s"]["mean"] > 0


def test_a_resumed_run_still_writes_a_complete_output_bag(model, reference, tmp_path):
    out = tmp_path / "eval"
    assert cli.main(eval_args(PROCEDURAL, out, model, "--limit", "2", "--output-bag")) == 0
    assert cli.main(eval_args(PROCEDURAL, out, model, "--output-bag")) == 0
    assert metrics_of(out) == reference
    from rosbags.rosbag2 import Reader

    with Reader(out / cli.OUTPUT_BAG) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts == dict.fromkeys(NODE_TOPICS.values(), FRAMES)
