"""Runner: metrics against an independent computation, JSONL round trip, bad frames, torn files."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from demasked_ros.apps.evaluate.config import EvalConfig, EvaluationError
from demasked_ros.apps.evaluate.parallel import SerialExecutor
from demasked_ros.apps.evaluate.report import build_summary
from demasked_ros.apps.evaluate.runner import (
    RunState,
    decode_statistics,
    encode_statistics,
    evaluate_frames,
    read_records,
)
from demasked_ros.core.classes import CAMVID
from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.core.metrics import frame_statistics
from demasked_ros.datasets.base import Frame, FrameError
from tests.apps.evaluate.eval_fixtures import HEIGHT, WIDTH, brightness_rule, spec

VOID = CAMVID.ignore_index
METRICS = ("mIoU", "mR", "cmR", "big_mR", "big_cmR", "pct_certified", "FAR")


def random_frames(count: int, seed: int = 0) -> list[Frame]:
    """Blocky random images (so the rule gives regions) with labels = rule output, part corrupted."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(count):
        blocks = rng.integers(0, 256, size=(HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
        image = np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))
        labels = brightness_rule(image[None])[0].astype(np.uint8)
        noise = rng.random(labels.shape) < 0.2
        labels[noise] = rng.integers(0, 11, size=int(noise.sum()))
        labels[rng.random(labels.shape) < 0.05] = VOID
        frames.append(Frame(index, 1000 * index, image, labels, f"f{index}", "test"))
    return frames


def independent_outputs(image: np.ndarray, config: EvalConfig) -> tuple[np.ndarray, np.ndarray]:
    """Labels and certificate computed without the engine: zero-filled branches, numpy vote."""
    if config.mode == "recovery":
        visible = recovery_masks(HEIGHT, WIDTH, config.patch, config.scheme).visible
    else:
        visible = detection_masks(HEIGHT, WIDTH, config.patch, config.scheme).visible
    branches = np.stack([brightness_rule(np.where(v[..., None], image, 0)[None])[0] for v in visible])
    if config.mode == "detection":
        plain = brightness_rule(image[None])[0]
        return plain, (branches == plain).all(axis=0)
    counts = np.stack([(branches == c).sum(axis=0) for c in range(11)])
    return counts.argmax(axis=0), (branches == branches[0]).all(axis=0)


def independent_metrics(frames: list[Frame], config: EvalConfig) -> dict[str, float]:
    """The paper's definitions (section 5.2), computed directly from per-pixel arrays."""
    tp, fp, fn = np.zeros(11), np.zeros(11), np.zeros(11)
    ctp, positives = np.zeros(11), np.zeros(11)
    pct_c, far = [], []
    for frame in frames:
        prediction, certified = independent_outputs(frame.image, config)
        assert frame.labels is not None
        truth = frame.labels.astype(int)
        valid = truth != VOID
        correct = valid & (prediction == truth)
        for c in range(11):
            tp[c] += (correct & (truth == c)).sum()
            fp[c] += (valid & (prediction == c) & (truth != c)).sum()
            fn[c] += (valid & (truth == c) & (prediction != c)).sum()
            ctp[c] += (correct & certified & (truth == c)).sum()
            positives[c] += (valid & (truth == c)).sum()
        pct_c.append((correct & certified).sum() / valid.sum())
        if correct.any():
            far.append((correct & ~certified).sum() / correct.sum())
    present = positives > 0
    union = tp + fp + fn
    return {"mIoU": 100 * np.mean(tp[union > 0] / union[union > 0]),
            "mR": 100 * np.mean(tp[present] / positives[present]),
            "cmR": 100 * np.mean(ctp[present] / positives[present]),
            "pct_certified": 100 * np.mean(pct_c), "FAR": 100 * np.mean(far)}


def run(frames, configs, records=()):
    state = RunState.restore(records, configs, 11, VOID, CAMVID.names)
    todo = {f.index: [c.config_id for c in configs if (f.index, c.config_id) not in state.done]
            for f in frames}
    jsonl = io.StringIO()
    evaluate_frames(iter(frames), todo, SerialExecutor(spec(configs)), state, jsonl)
    return state, [json.loads(line) for line in jsonl.getvalue().splitlines()]


@pytest.mark.parametrize("config", [
    EvalConfig("recovery", "column", 0.02, demasker="solid", segmenter="rule"),
    EvalConfig("recovery", "3-mask", 0.02, demasker="solid", segmenter="rule"),
    EvalConfig("detection", "row", 0.03, demasker="solid", segmenter="rule"),
], ids=lambda c: c.config_id)
def test_metrics_match_an_independent_computation(config):
    frames = random_frames(4)
    state, records = run(frames, [config])
    summary = build_summary([config], state, {})["configurations"][config.config_id]
    expected = independent_metrics(frames, config)
    for key in ("mIoU", "mR", "cmR", "pct_certified"):
        assert summary[key] == pytest.approx(expected[key], abs=1e-9), key
    if config.mode == "detection":
        assert summary["FAR"] == pytest.approx(expected["FAR"], abs=1e-9)
    else:
        assert summary["FAR"] is None
    assert summary["frames"] == 4 and [r["index"] for r in records] == [0, 1, 2, 3]


def test_restoring_from_the_jsonl_gives_the_same_summary():
    frames, configs = random_frames(3, seed=1), spec().configs
    state, records = run(frames, list(configs))
    restored = RunState.restore(records, configs, 11, VOID, CAMVID.names)
    assert restored.done == state.done
    live, again = build_summary(configs, state, {}), build_summary(configs, restored, {})
    assert json.dumps(live, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert live["configurations"][configs[0].config_id]["frames"] == 3


def test_resume_skips_done_pairs_and_ends_with_the_same_numbers():
    frames, configs = random_frames(4, seed=2), list(spec().configs)
    full, _ = run(frames, configs)
    _, records = run(frames[:2], configs)
    second, new_records = run(frames, configs, records)
    assert {r["index"] for r in new_records} == {2, 3}
    assert second.done == full.done
    resumed = build_summary(configs, second, {})["configurations"]
    uninterrupted = build_summary(configs, full, {})["configurations"]
    for cid in resumed:
        for key in (*METRICS, "frames", "per_class", "big_classes"):
            assert resumed[cid][key] == uninterrupted[cid][key], (cid, key)


def test_bad_frames_are_recorded_counted_and_kept_out_of_the_metrics():
    frames = random_frames(2, seed=3)
    broken_labels = frames[1].labels.copy()
    broken_labels[0, 0] = 42  # neither a class nor void
    bad = [frames[0], FrameError(1, 1000, "f1", "test", "cannot decode"),
           Frame(2, 2000, frames[1].image, broken_labels, "f2", "test")]
    config = EvalConfig("recovery", "column", 0.02, demasker="solid", segmenter="rule")
    state, records = run(bad, [config])
    assert [r["status"] for r in records] == ["ok", "error", "error"]
    assert "cannot decode" in records[1]["error"] and "labels" in records[2]["error"]
    totals = state.totals[config.config_id]
    assert totals.metrics.frames == 1 and len(totals.errors) == 2
    summary = build_summary([config], state, {})["configurations"][config.config_id]
    assert summary["errors"] == 2 and summary["frames"] == 1


def test_frames_without_labels_still_give_certification_statistics():
    frame = random_frames(1)[0]
    unlabelled = Frame(0, 0, frame.image, None, "f0", "test")
    config = EvalConfig("detection", "column", 0.03, demasker="solid", segmenter="rule")
    state, records = run([unlabelled], [config])
    assert records[0]["status"] == "ok" and records[0]["stats"] is None
    assert 0.0 <= records[0]["certified_fraction"] <= 1.0
    summary = build_summary([config], state, {})["configurations"][config.config_id]
    assert summary["frames"] == 0 and summary["frames_evaluated"] == 1 and summary["mIoU"] is None
    assert summary["certified_pixels_pct"] == pytest.approx(100 * records[0]["certified_fraction"])


def test_statistics_round_trip_through_json():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 12, size=(6, 7))
    stats = frame_statistics(rng.integers(0, 11, size=(6, 7)), rng.random((6, 7)) < 0.5, truth, 11, VOID)
    decoded = decode_statistics(json.loads(json.dumps(encode_statistics(stats))), 11)
    assert set(decoded) == set(stats)
    for key, value in stats.items():
        np.testing.assert_array_equal(decoded[key], value)


def test_torn_last_line_is_dropped_but_damage_elsewhere_is_an_error(tmp_path):
    path = tmp_path / "frames.jsonl"
    good = json.dumps({"index": 0, "frame": "a", "config": "c", "status": "ok"})
    path.write_text(good + "\n" + good[:20])
    assert len(read_records(path)) == 1
    path.write_text(good[:20] + "\n" + good + "\n")
    with pytest.raises(EvaluationError, match="not valid JSON"):
        read_records(path)


def test_a_renamed_frame_is_refused_on_resume():
    frames, configs = random_frames(1), list(spec().configs)
    _, records = run(frames, configs)
    renamed = [dict(r, frame="other") for r in records]
    state = RunState.restore(records[:1], configs, 11, VOID, CAMVID.names)
    with pytest.raises(EvaluationError, match="input changed"):
        state.add(renamed[1])


def test_a_frame_too_small_for_the_patch_is_a_bad_frame_not_a_crash():
    frames = random_frames(1)
    tiny = Frame(1, 1000, frames[0].image[:16, :16].copy(), frames[0].labels[:16, :16].copy(), "tiny", "t")
    config = EvalConfig("recovery", "column", (20, 20), demasker="solid", segmenter="rule")
    state, records = run([frames[0], tiny], [config])
    assert [r["status"] for r in records] == ["ok", "error"]
    assert "does not fit" in records[1]["error"]
    assert state.totals[config.config_id].metrics.frames == 1


def test_an_unavailable_model_stops_the_run():
    config = EvalConfig("recovery", "column", 0.02, demasker="solid", segmenter="/nonexistent/model.onnx")
    with pytest.raises(EvaluationError, match="model"):
        run(random_frames(1), [config])
