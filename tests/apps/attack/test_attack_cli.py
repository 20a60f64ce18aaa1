"""demasked-attack and demasked-calibrate end to end on small procedural frames (default models)."""

from __future__ import annotations

import json

import pytest

from demasked_ros.apps import attack_cli, calibrate_cli

SUMMARY_KEYS = {"frames", "undefended_mIoU_clean", "undefended_mIoU_attacked", "undefended_changed_pct",
                "certified_flipped", "verified_flipped", "uncertified_changed_pct", "alarm_rate_clean",
                "alarm_rate_attacked"}


def _lines(path):
    return [json.loads(line) for line in (path / "frames.jsonl").read_text().splitlines()]


def test_attack_cli_writes_summary_resumes_and_saves(tmp_path):
    out = tmp_path / "run"
    argv = ["procedural:2:0:48x64", "--out", str(out), "--attack", "pgd", "--steps", "2", "--patch", "8x8",
            "--placements", "2", "--save-attacked", "--quiet", "--calibration", str(tmp_path / "none.json")]
    assert attack_cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["frames"] == 2 and summary["placements"] == 4 and summary["certified_flipped"] == 0
    records = _lines(out)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert len(list((out / "attacked").glob("*.png"))) == 4
    assert attack_cli.main(argv) == 0  # resume: nothing left to do
    assert len(_lines(out)) == 4


def test_a_run_of_a_since_retrained_model_is_not_resumed(tmp_path):
    import shutil

    from demasked_ros.engines.factory import DEFAULT_SEGMENTER_PATH

    model = tmp_path / "mine.onnx"
    shutil.copyfile(DEFAULT_SEGMENTER_PATH, model)
    out = tmp_path / "run"
    argv = ["procedural:1:0:48x64", "--out", str(out), "--attack", "random", "--patch", "8x8", "--quiet",
            "--segmenter", str(model), "--calibration", str(tmp_path / "none.json")]
    assert attack_cli.main(argv) == 0 and len(_lines(out)) == 1
    assert attack_cli.main(argv) == 0  # the same model file: resumed, nothing to do
    model.write_bytes(model.read_bytes()[:-1] + b"!")  # retrained under the same name
    assert attack_cli.main(argv) == 2  # refused: its records belong to the old weights
    assert len(_lines(out)) == 1  # and nothing was lost


def test_calibrate_then_attack_reports_alarm_rates(tmp_path):
    calibration = tmp_path / "alarm.json"
    assert calibrate_cli.main(["procedural:3:1:48x64", "--out", str(calibration), "--mode", "detection",
                               "--patch", "8x8", "--runs", str(tmp_path / "runs"), "--rate", "0.0",
                               "--quiet"]) == 0
    (entry,) = json.loads(calibration.read_text())["calibrations"].values()
    assert entry["frames"] == 3 and entry["measured"]["calibration_alarm_rate"] == 0.0
    from demasked_ros.engines.factory import model_fingerprint

    assert entry["models_sha256"] == model_fingerprint()  # the node checks it against its own models
    out = tmp_path / "attack"
    assert attack_cli.main(["procedural:3:1:48x64", "--out", str(out), "--attack", "random", "--mode",
                            "detection", "--patch", "8x8", "--calibration", str(calibration), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alarm_rate_clean"] == 0.0 and summary["alarm_rate_attacked"] is not None
    assert summary["verified_flipped"] == 0 and summary["calibration"] == entry["key"]


def test_bad_arguments_exit_2(tmp_path):
    assert attack_cli.main(["procedural:2", "--out", str(tmp_path), "--placements", "0", "--quiet"]) == 2
    with pytest.raises(SystemExit):
        attack_cli.main(["procedural:2", "--out", str(tmp_path), "--attack", "bogus"])


def test_worker_processes_give_the_serial_records(tmp_path):
    common = ["procedural:3:2:48x64", "--attack", "random", "--patch", "8x8", "--placements", "2", "--quiet",
              "--calibration", str(tmp_path / "none.json")]
    assert attack_cli.main([*common, "--out", str(tmp_path / "serial")]) == 0
    assert attack_cli.main([*common, "--out", str(tmp_path / "pool"), "--workers", "2"]) == 0

    def strip(records):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    assert strip(_lines(tmp_path / "serial")) == strip(_lines(tmp_path / "pool"))


def test_hold_keeps_each_patch_position_for_n_consecutive_frames(tmp_path):
    common = ["procedural:4:0:48x64", "--attack", "random", "--patch", "8x8", "--quiet",
              "--calibration", str(tmp_path / "none.json")]
    assert attack_cli.main([*common, "--out", str(tmp_path / "held"), "--hold", "2"]) == 0
    held = [r["placement"] for r in sorted(_lines(tmp_path / "held"), key=lambda r: r["index"])]
    assert held[0] == held[1] and held[2] == held[3] and held[0] != held[2]
    assert attack_cli.main([*common, "--out", str(tmp_path / "free")]) == 0
    free = [r["placement"] for r in sorted(_lines(tmp_path / "free"), key=lambda r: r["index"])]
    assert free[0] != free[1] and free[2] != free[3]
    assert attack_cli.main([*common, "--out", str(tmp_path / "bad"), "--hold", "0"]) == 2


def test_calibrate_temporal_adds_a_joint_persistent_threshold(tmp_path):
    from demasked_ros.core.alarm import load_calibrations

    calibration = tmp_path / "alarm.json"
    common = ["procedural:4:2:48x64", "--out", str(calibration), "--mode", "detection", "--patch", "8x8",
              "--runs", str(tmp_path / "runs"), "--rate", "0.0", "--quiet"]
    assert calibrate_cli.main([*common, "--temporal", "procedural:4:2:48x64", "--temporal-window", "2"]) == 0
    (entry,) = load_calibrations(calibration).values()
    assert entry.temporal is not None and entry.temporal.frames == 4 and entry.temporal.params.window == 2
    assert entry.measured["clip_alarm_rate"] == 0.0  # rate 0: neither rule fires on the clip
    assert entry.temporal.threshold > 0.0
    assert "procedural:4:2:48x64" in entry.measured["temporal_clip"]
    assert calibrate_cli.main([*common, "--temporal", "procedural:2:2:40x64"]) == 2  # another size


def test_gradient_attacks_optimise_the_certified_model_or_refuse(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx", reason="twins of ONNX files need the onnx package")
    import shutil

    from demasked_ros.engines.factory import DEFAULT_SEGMENTER_PATH

    model = tmp_path / "fold.onnx"
    shutil.copyfile(DEFAULT_SEGMENTER_PATH, model)
    base = ["procedural:1:0:48x64", "--steps", "2", "--patch", "8x8", "--quiet",
            "--calibration", str(tmp_path / "none.json")]
    assert attack_cli.main([*base, "--out", str(tmp_path / "a"), "--segmenter", str(model)]) == 0
    assert _lines(tmp_path / "a")[0]["status"] == "ok"
    assert attack_cli.main([*base, "--out", str(tmp_path / "b"), "--segmenter", "tests.x:model"]) == 2
    assert attack_cli.main([*base, "--out", str(tmp_path / "c"), "--attack", "adaptive",
                            "--demasker", "telea"]) == 2
    assert capsys.readouterr().err.count("torch twin") == 2
    # a twin that is not the certified model (here: another network) makes every frame an error record
    from demasked_ros.attacks.torch_models import TorchPipeline
    from tests.attacks.tiny_torch import TinySegmenter

    monkeypatch.setattr(TorchPipeline, "for_models",
                        classmethod(lambda cls, *a, **k: cls(TinySegmenter(), None)))
    assert attack_cli.main([*base, "--out", str(tmp_path / "d"), "--segmenter", str(model)]) == 1
    (record,) = _lines(tmp_path / "d")
    assert record["status"] == "error" and "not the same model" in record["error"]


def test_an_attack_on_another_model_uses_that_model_s_calibration(tmp_path):
    import shutil

    from demasked_ros.engines.factory import DEFAULT_SEGMENTER_PATH

    model = tmp_path / "fold.onnx"
    shutil.copyfile(DEFAULT_SEGMENTER_PATH, model)
    calibration = tmp_path / "alarm.json"
    common = ["procedural:2:1:48x64", "--mode", "detection", "--patch", "8x8", "--quiet", "--tolerance", "2"]
    assert calibrate_cli.main([*common, "--out", str(calibration), "--runs", str(tmp_path / "runs"),
                               "--segmenter", str(model)]) == 0
    (key,) = json.loads(calibration.read_text())["calibrations"]
    assert key.endswith("-fold+default")
    out = tmp_path / "attack"
    assert attack_cli.main(["procedural:2:1:48x64", "--out", str(out), "--attack", "random", "--mode",
                            "detection", "--patch", "8x8", "--segmenter", str(model), "--calibration",
                            str(calibration), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calibration"] == key and summary["alarm_rate_clean"] is not None
    # and the packaged models' runs do not pick up a threshold fitted on another model
    assert attack_cli.main(["procedural:2:1:48x64", "--out", str(tmp_path / "other"), "--attack", "random",
                            "--mode", "detection", "--patch", "8x8", "--calibration", str(calibration),
                            "--quiet"]) == 0
    assert json.loads((tmp_path / "other" / "summary.json").read_text())["calibration"] is None
