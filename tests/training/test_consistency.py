"""Consistency-training pieces: branch masks from the product's families, masking before filling,
image-major branch layout, and the loss (stop-gradient on the clean side)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training tests need torch (requirements/train.txt)")

from demasked_ros.engines.demaskers import SolidFillDemasker  # noqa: E402
from demasked_ros.training.consistency import (  # noqa: E402
    branch_agreement,
    branch_inputs,
    consistency_loss,
    draw_branch_masks,
    masked_copies,
    product_families,
)


def test_branch_masks_are_shifted_masks_of_the_product_families():
    families = product_families(36, 48)
    rng = np.random.default_rng(0)
    visible = draw_branch_masks(families, 3, 30, 40, rng)
    assert visible.shape == (3 * 2, 30, 40) and visible.dtype == bool
    for i, mask in enumerate(visible):
        group = families.modes[i % 2]
        # each drawn mask is a wrapped crop of one mask of its mode's families
        found = False
        for masks in group:
            for full in masks.visible:
                for dy in range(full.shape[0]):
                    rolled = np.roll(full, -dy, axis=0)
                    for dx in range(full.shape[1]):
                        if np.array_equal(np.roll(rolled, -dx, axis=1)[:30, :40], mask):
                            found = True
                            break
                    if found:
                        break
                if found:
                    break
            if found:
                break
        assert found, f"branch mask {i} is not a shifted product mask"
    one = draw_branch_masks(families, 4, 30, 40, rng, one_mode=True)
    assert one.shape == (4, 30, 40)


def test_filler_only_sees_zeroed_masked_pixels_and_copies_are_image_major():
    seen = []

    class Recorder:
        def demask(self, images, visible):
            seen.append((images.copy(), visible.copy()))
            return SolidFillDemasker((7, 7, 7)).demask(images, visible)

    images = np.stack([np.full((36, 48, 3), 50 + 60 * i, np.uint8) for i in range(3)])
    families = product_families(36, 48)
    batch = branch_inputs(images, families, Recorder(), np.random.default_rng(1), branches=2)
    per_image = 2 * 2
    assert batch.shape == (3 + 3 * per_image, 36, 48, 3)
    np.testing.assert_array_equal(batch[:3], images)
    hidden, visible = seen[0]
    assert (hidden[~visible] == 0).all()  # masking first: nothing of a masked pixel reaches the filler
    for j, copy in enumerate(batch[3:]):
        source = images[j // per_image]
        np.testing.assert_array_equal(copy[visible[j]], source[visible[j]])
        assert (copy[~visible[j]] == 7).all()
    assert branch_inputs(images, families, Recorder(), np.random.default_rng(1), branches=0) is images


def test_masked_copies_rejects_nothing_and_keeps_visible_pixels():
    images = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    visible = np.zeros((4, 8, 8), bool)
    visible[:, :, :4] = True
    out = masked_copies(images, visible, SolidFillDemasker())
    np.testing.assert_array_equal(out[1][:, :4], images[0][:, :4])  # copies 0, 1 of image 0
    np.testing.assert_array_equal(out[2][:, :4], images[1][:, :4])
    assert (out[:, :, 4:] == 0).all()


def test_kl_term_pulls_branches_only_and_vanishes_when_they_agree():
    torch.manual_seed(0)
    clean = torch.randn(2, 5, 4, 4, requires_grad=True)
    branches = torch.randn(4, 5, 4, 4, requires_grad=True)
    labels = torch.randint(0, 5, (2, 4, 4))
    labels[0, 0, 0] = 11  # void
    loss, parts = consistency_loss(clean, branches, labels, None, ce_weight=0.0, kl_weight=1.0)
    ce_clean = torch.nn.functional.cross_entropy(clean, labels, ignore_index=11)
    (loss - ce_clean).backward()
    assert torch.count_nonzero(clean.grad) == 0  # stop-gradient: the clean side is not pulled
    assert torch.count_nonzero(branches.grad) > 0
    assert parts["kl"] > 0
    same = clean.detach().repeat_interleave(2, dim=0)
    _, parts = consistency_loss(clean.detach(), same, labels, None, 0.5, 1.0)
    assert parts["kl"] == pytest.approx(0.0, abs=1e-6)
    assert branch_agreement(clean.detach(), same) == 1.0
    _, parts = consistency_loss(clean.detach(), branches[:0], labels, None, 0.5, 1.0)
    assert set(parts) == {"ce_clean"}


CAMVID = Path(os.environ.get(
    "DEMASKED_CAMVID", Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"))
SEG_TINY = ["--max-frames", "2", "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "64", "96",
            "--eval-every", "0", "--warmup-iters", "1"]
DEM_TINY = ["--max-train-frames", "2", "--batch-size", "2", "--crop", "32", "48",
            "--widths", "4", "8", "8", "8", "--no-extra-masks", "--val-frames", "0"]


@pytest.mark.camvid
@pytest.mark.slow  # ~30 s on 2 shared cores: two tiny trainings, two alternation rounds
@pytest.mark.skipif(not (CAMVID / "sequences.tsv").is_file(), reason=f"CamVid not found at {CAMVID}")
def test_fold_run_resumes_and_alternation_rounds_chain_and_skip_when_done(tmp_path):
    from demasked_ros.training import cli

    seg = tmp_path / "seg0"
    base = ["consistency", "--data", str(CAMVID), "--fold", "0001TP", "--run-dir", str(seg), *SEG_TINY,
            "--widths", "8", "16", "16", "--decoder-width", "8", "--fill", "telea"]
    assert cli.main([*base, "--epochs", "1"]) == 0
    assert cli.main([*base, "--epochs", "2", "--resume"]) == 0
    records = [json.loads(line) for line in (seg / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1] and all(r["epoch_s"] >= 0 for r in records)
    assert all(0 <= r["agreement"] <= 1 and r["kl"] >= 0 for r in records)
    assert "fold 0001TP: train 406 frames" in (seg / "log.txt").read_text()
    dem = tmp_path / "dem0"
    assert cli.main(["demasker", "--data", str(CAMVID), "--fold", "0001TP", "--out-dir", str(dem),
                     "--epochs", "1", "--steps-per-epoch", "1", *DEM_TINY]) == 0

    alt = ["alternate", "--data", str(CAMVID), "--fold", "0001TP", "--run-dir", str(tmp_path / "alt"),
           "--rounds", "2", "--seg-init", str(seg / "last.pt"), "--dem-init", str(dem / "last.pt"),
           "--seg-epochs", "1", "--dem-epochs", "1", "--dem-steps", "1", "--task-weight", "1",
           "--seg-args", " ".join(SEG_TINY), "--dem-args", " ".join(DEM_TINY)]
    assert cli.main(alt) == 0
    for r in (1, 2):
        assert (tmp_path / "alt" / f"round{r}" / "seg" / "segmenter.onnx").is_file()
        assert (tmp_path / "alt" / f"round{r}" / "dem" / "demasker.onnx").is_file()
    log = tmp_path / "alt" / "round2" / "seg" / "metrics.jsonl"
    before = log.read_text()
    assert cli.main(alt) == 0  # everything done: nothing retrained
    assert log.read_text() == before


def test_procedural_scenes_are_mixed_in_at_the_requested_share():
    from demasked_ros.training.consistency_train import FoldBatches, procedural_pool
    from demasked_ros.training.data import AugmentConfig, SegmentationSplit

    pool = procedural_pool(3, 48, 64, seed=0)
    assert pool.images.shape == (3, 48, 64, 3) and pool.labels.max() <= 11
    real = SegmentationSplit(np.zeros((4, 48, 64, 3), np.uint8), np.zeros((4, 48, 64), np.uint8))
    identity = AugmentConfig(crop=(48, 64), scale_range=(1.0, 1.0), flip=False, jitter=0.0)
    for share, expect_procedural in ((1.0, True), (0.0, False)):
        batches = FoldBatches(real, identity, 4, 0.0, pool, share)
        for images, labels in batches.epoch(np.random.default_rng(0), 2):
            for image, label in zip(images, labels, strict=True):
                from_pool = any(np.array_equal(image, p) and np.array_equal(label, q)
                                for p, q in zip(pool.images, pool.labels, strict=True))
                assert from_pool == expect_procedural
