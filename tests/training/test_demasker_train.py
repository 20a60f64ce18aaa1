"""Demasker training: sampling, loss, export to a working LearnedDemasker, one-step runs + resume."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training tests need torch (requirements/train.txt)")

from demasked_ros.engines.learned_demasker import STRIDE_METADATA_KEY, LearnedDemasker  # noqa: E402
from demasked_ros.training import demasker_train  # noqa: E402
from demasked_ros.training.demasker_model import MODEL_STRIDE, DemaskerNet  # noqa: E402

CAMVID = Path(os.environ.get("DEMASKED_CAMVID",
                             Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"))
needs_camvid = pytest.mark.skipif(not (CAMVID / "train").is_dir(),
                                  reason=f"CamVid not found at {CAMVID} (set DEMASKED_CAMVID)")
TINY = ["--max-train-frames", "2", "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "32", "48",
        "--widths", "4", "8", "8", "8", "--no-extra-masks"]


def test_default_families_are_the_nodes_masks():
    families = demasker_train.build_mask_families(96, 128, extra=False)
    assert list(families) == list(demasker_train.DEFAULT_FAMILIES)
    for masks in families.values():
        assert masks.dtype == bool and masks.shape[1:] == (96, 128)
    assert len(demasker_train.build_mask_families(96, 128, extra=True)) > len(families)


def test_sampling_is_deterministic_and_crops_image_and_mask_together():
    images = np.random.default_rng(0).integers(0, 256, size=(3, 64, 80, 3), dtype=np.uint8)
    families = demasker_train.build_mask_families(64, 80, extra=True)
    source = demasker_train.SampleSource(images, families, (32, 48), default_probability=0.5)
    crops, masks, labels = source.batch(np.random.default_rng(5), 4)
    again, masks_again, _ = source.batch(np.random.default_rng(5), 4)
    assert labels is None
    assert crops.shape == (4, 32, 48, 3) and masks.shape == (4, 32, 48)
    assert np.array_equal(crops, again) and np.array_equal(masks, masks_again)
    assert 0 < masks.mean() < 1
    with pytest.raises(demasker_train.TrainingDataError):
        demasker_train.SampleSource(images, families, (30, 48), default_probability=0.5)


def test_loss_counts_masked_pixels_only():
    target = torch.rand(1, 3, 16, 16)
    visible = torch.zeros(1, 1, 16, 16)
    visible[..., ::2] = 1
    wrong_where_visible = torch.where(visible > 0, 1 - target, target)
    assert demasker_train.masked_loss(wrong_where_visible, target, visible).item() == 0
    wrong_where_masked = torch.where(visible > 0, target, 1 - target)
    assert demasker_train.masked_loss(wrong_where_masked, target, visible).item() > 0.1


def test_masked_psnr_matches_its_definition():
    target = np.full((4, 4, 3), 100, np.uint8)
    visible = np.zeros((4, 4), bool)
    visible[0] = True
    prediction = target.copy()
    prediction[1:] += 5  # masked pixels off by 5; a visible error must not count
    prediction[0] = 0
    assert demasker_train.masked_psnr(prediction, target, visible) == pytest.approx(
        10 * math.log10(255**2 / 25))
    assert demasker_train.masked_psnr(target, target, visible) == math.inf


def test_learning_rate_warms_up_then_decays():
    factors = [demasker_train._lr_factor(s, 1000, warmup=10) for s in range(1000)]
    assert factors[0] < factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert factors[-1] < 0.05


def test_export_gives_an_onnx_model_the_engine_runs_like_torch(tmp_path):
    torch.manual_seed(0)
    model = DemaskerNet((4, 8, 8, 8)).eval()
    path = tmp_path / "demasker.onnx"
    assert demasker_train.export_onnx(model, path, height=32, width=48) < 1e-4
    demasker = LearnedDemasker(path, threads=1)
    assert demasker.stride == MODEL_STRIDE
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 40, 50, 3), dtype=np.uint8)  # not a stride multiple
    visible = rng.random((2, 40, 50)) < 0.4
    engine_out = demasker.demask(images, visible)
    torch_out = demasker_train.demask_full_frames(model, images, visible, torch.device("cpu"))
    assert np.abs(engine_out.astype(int) - torch_out.astype(int)).max() <= 1
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata[STRIDE_METADATA_KEY] == str(MODEL_STRIDE)


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert demasker_train.main(["--data", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "run"),
                                *TINY, "--val-frames", "0"]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.camvid
@needs_camvid
def test_one_step_runs_checkpoint_resume_exactly_and_export(tmp_path):
    base = ["--data", str(CAMVID), *TINY, "--val-frames", "0"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert demasker_train.main([*base, "--out-dir", str(straight), "--epochs", "2"]) == 0
    assert demasker_train.main([*base, "--out-dir", str(split), "--epochs", "2",
                                "--time-limit-min", "0"]) == 0
    records = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]  # stopped by the time limit after one epoch
    assert np.isfinite(records[0]["train_loss"])
    assert demasker_train.main([*base, "--out-dir", str(split), "--epochs", "2", "--resume"]) == 0
    a = torch.load(straight / "last.pt", weights_only=False)["model"]
    b = torch.load(split / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert (split / "demasker.onnx").is_file()
    assert LearnedDemasker(split / "demasker.onnx", threads=1).stride == MODEL_STRIDE


@pytest.mark.camvid
@needs_camvid
def test_validation_scores_both_default_families_against_telea(tmp_path):
    run = tmp_path / "run"
    assert demasker_train.main(["--data", str(CAMVID), *TINY, "--val-frames", "1", "--epochs", "1",
                                "--out-dir", str(run)]) == 0
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for key in ("val_psnr", "telea_psnr"):
        assert set(record[key]) == set(demasker_train.DEFAULT_FAMILIES)
    # Recompute both scores independently: the first val frame (--val-frames 1), the node's two
    # default mask families, the engine's demaskers, PSNR over the masked pixels written out here.
    from demasked_ros.core.masks import detection_masks, recovery_masks
    from demasked_ros.datasets.camvid import CamVidSource
    from demasked_ros.engines.demaskers import TeleaDemasker

    image = next(iter(CamVidSource(CAMVID, "val", with_labels=False))).image
    families = {"recovery-column-0.5%": recovery_masks(360, 480, 0.005, "column").visible,
                "detection-column-1%": detection_masks(360, 480, 0.01, "column").visible}
    learned = LearnedDemasker(run / "demasker.onnx", threads=1)
    for name, visible in families.items():
        batch = np.where(visible[..., None], image[None], 0).astype(np.uint8)
        for key, demasker, tolerance in (("telea_psnr", TeleaDemasker(), 1e-6), ("val_psnr", learned, 0.05)):
            filled = demasker.demask(batch, visible)
            scores = []
            for out, vis in zip(filled, visible, strict=True):
                error = out[~vis].astype(np.float64) - image[~vis].astype(np.float64)
                scores.append(10 * math.log10(255.0**2 / np.mean(error**2)))
            assert record[key][name] == pytest.approx(np.mean(scores), abs=tolerance), (key, name)


def test_labels_are_cropped_and_flipped_with_their_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 48, 64, 3), dtype=np.uint8)
    labels = images[..., 1] // 32  # a label map that is a function of the pixel
    families = demasker_train.build_mask_families(48, 64, extra=False)
    source = demasker_train.SampleSource(images, families, (32, 32), 0.5, labels=labels)
    crops, _, crop_labels = source.batch(np.random.default_rng(1), 6)
    assert crop_labels is not None and np.array_equal(crop_labels, crops[..., 1] // 32)


def tiny_segmenter_checkpoint(path: Path) -> Path:
    from demasked_ros.training.segmenter_model import CompactSegNet

    torch.manual_seed(0)
    config: dict[str, Any] = {"widths": [8, 8, 8], "decoder_width": 8, "downscale": 2}
    net = CompactSegNet(widths=tuple(config["widths"]), decoder_width=config["decoder_width"])
    torch.save({"model": net.state_dict(), "config": config}, path)
    return path


def test_segmentation_loss_ignores_visible_and_void_pixels(tmp_path):
    segmenter = demasker_train.load_frozen_segmenter(tiny_segmenter_checkpoint(tmp_path / "s.pt"),
                                                     torch.device("cpu"))
    assert not any(p.requires_grad for p in segmenter.parameters())
    output = torch.rand(1, 3, 32, 32, requires_grad=True)
    labels = torch.full((1, 32, 32), 3, dtype=torch.long)
    all_visible = torch.ones(1, 1, 32, 32)
    assert demasker_train.segmentation_loss(segmenter, output, labels, all_visible).item() == 0
    hidden = torch.zeros(1, 1, 32, 32)
    loss = demasker_train.segmentation_loss(segmenter, output, labels, hidden)
    loss.backward()
    assert loss.item() > 0 and output.grad is not None and output.grad.abs().sum() > 0
    void = torch.full_like(labels, demasker_train.IGNORE_INDEX)
    assert demasker_train.segmentation_loss(segmenter, output, void, hidden).item() == 0
    with pytest.raises(demasker_train.TrainingDataError):
        demasker_train.load_frozen_segmenter(tmp_path / "missing.pt", torch.device("cpu"))


@pytest.mark.camvid
@needs_camvid
def test_segmentation_aware_fine_tuning_starts_from_init_weights(tmp_path):
    base = ["--data", str(CAMVID), *TINY, "--val-frames", "0", "--epochs", "1"]
    first, second = tmp_path / "a", tmp_path / "b"
    assert demasker_train.main([*base, "--out-dir", str(first)]) == 0
    checkpoint = tiny_segmenter_checkpoint(tmp_path / "seg.pt")
    assert demasker_train.main([*base, "--out-dir", str(second), "--init", str(first / "last.pt"),
                                "--lr", "0", "--seg-checkpoint", str(checkpoint), "--seg-weight", "0.1"]) == 0
    record = json.loads((second / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(record["train_loss"])
    init = torch.load(first / "last.pt", weights_only=False)["model"]
    tuned = torch.load(second / "last.pt", weights_only=False)["model"]
    weights = [name for name in init if name.endswith("weight")]
    assert weights and all(torch.equal(init[name], tuned[name]) for name in weights)  # lr 0: unchanged
    assert demasker_train.main([*base, "--out-dir", str(tmp_path / "c"), "--seg-weight", "0.1"]) == 2


def test_task_loss_is_zero_for_a_perfect_fill_and_trains_the_demasker_only():
    torch.manual_seed(0)
    segmenter = torch.nn.Conv2d(3, 5, 3, padding=1)
    for parameter in segmenter.parameters():
        parameter.requires_grad_(False)
    clean = torch.rand(2, 3, 16, 16)
    perfect = demasker_train.disagreement_loss(segmenter, clean.clone(), clean)
    assert float(perfect) == pytest.approx(0, abs=1e-6)
    fill = torch.rand(2, 3, 16, 16, requires_grad=True)
    loss = demasker_train.disagreement_loss(segmenter, fill, clean)
    loss.backward()
    assert float(loss) > 0 and torch.count_nonzero(fill.grad) > 0
    with torch.no_grad():  # one gradient step on the fill lowers the segmenter's disagreement
        stepped = fill - 0.5 * fill.grad / fill.grad.abs().max()
    assert float(demasker_train.disagreement_loss(segmenter, stepped, clean)) < float(loss)
