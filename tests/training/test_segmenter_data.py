"""CamVid loading and augmentation for segmenter training."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from demasked_ros.training.data import (
    IGNORE_INDEX,
    AugmentConfig,
    MaskedFillCache,
    SegmentationSplit,
    TrainBatches,
    TrainingDataError,
    augment,
    class_weights,
    load_split,
)

CAMVID = Path(os.environ.get(
    "DEMASKED_CAMVID", Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"))
needs_camvid = pytest.mark.skipif(not (CAMVID / "train").is_dir(),
                                  reason=f"CamVid not found at {CAMVID} (set DEMASKED_CAMVID)")


def synthetic_split(n: int = 4, height: int = 40, width: int = 60) -> SegmentationSplit:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    labels = rng.integers(0, 12, (n, height, width)).astype(np.uint8)
    return SegmentationSplit(images, labels, [f"f{i}.png" for i in range(n)])


@pytest.mark.camvid
@needs_camvid
def test_load_split_decodes_rgb_frames_and_half_resolution_labels():
    full = load_split(CAMVID, "val", max_frames=2)
    half = load_split(CAMVID, "val", downscale=2, max_frames=2)
    assert full.images.shape == (2, 360, 480, 3) and full.images.dtype == np.uint8
    assert half.images.shape == (2, 180, 240, 3) and half.labels.shape == (2, 180, 240)
    assert full.labels.max() <= IGNORE_INDEX
    np.testing.assert_array_equal(half.labels, full.labels[:, 1::2, 1::2])
    # INTER_AREA at factor 2 is the 2x2 average the deployed network applies in its graph
    block_mean = full.images[0].reshape(180, 2, 240, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(half.images[0] - block_mean).max() <= 1.0


def test_load_split_reports_a_missing_folder_clearly(tmp_path):
    with pytest.raises(TrainingDataError, match="not found"):
        load_split(tmp_path, "train")


def test_class_weights_favour_rare_classes_and_skip_void():
    labels = np.array([0] * 90 + [1] * 10 + [11] * 50, dtype=np.uint8)
    weights = class_weights(labels, num_classes=3)
    assert weights.shape == (3,)
    assert weights[2] > weights[1] > weights[0] > 0


def test_augment_returns_the_crop_size_with_only_known_labels():
    split = synthetic_split()
    config = AugmentConfig(crop=(32, 48), scale_range=(0.5, 1.5))
    rng = np.random.default_rng(0)
    for _ in range(10):
        image, label = augment(split.images[0], split.labels[0], config, rng)
        assert image.shape == (32, 48, 3) and image.dtype == np.uint8
        assert label.shape == (32, 48)
        assert set(np.unique(label)) <= set(range(12))


def test_epoch_batches_are_deterministic_given_the_seed():
    split = synthetic_split()
    batches = TrainBatches(split, batch_size=2, config=AugmentConfig(crop=(32, 48), demask_probability=0.5))
    first = list(batches.epoch(np.random.default_rng([0, 3])))
    second = list(batches.epoch(np.random.default_rng([0, 3])))
    assert len(first) == 2
    for (a_img, a_lab), (b_img, b_lab) in zip(first, second, strict=True):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_lab, b_lab)


def test_demasked_copies_keep_visible_pixels_and_ignore_hidden_ones():
    split = synthetic_split(n=1, height=60, width=80)
    cache = MaskedFillCache(60, 80)
    filled = cache.filled(0, split.images[0], np.random.default_rng(5))
    (key,) = cache._cache
    visible = cache.families[key[1]].visible[key[2]]
    np.testing.assert_array_equal(filled[visible], split.images[0][visible])
    # hidden pixels are inpainted from visible ones only: changing them changes nothing
    altered = split.images[0].copy()
    altered[~visible] = 255 - altered[~visible]
    other = MaskedFillCache(60, 80)
    other.families = cache.families
    assert key not in other._cache
    np.testing.assert_array_equal(other.filled(0, altered, np.random.default_rng(5)), filled)


def test_masked_fill_cache_learned_and_mixed_fills_keep_visible_pixels():
    from demasked_ros.training.data import MaskedFillCache

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    for fill in ("telea", "learned", "mixed"):
        cache = MaskedFillCache(90, 120, fill=fill)
        for _ in range(4):
            out = cache.filled(0, image, rng)
            assert out.shape == image.shape and out.dtype == np.uint8
            kept = [m for fam in cache.families for m in fam.visible
                    if np.array_equal(out[m], image[m])]
            assert kept, "no mask of the families explains the visible pixels"
    with pytest.raises(ValueError):
        MaskedFillCache(90, 120, fill="magic")


def test_safety_frames_are_sampled_more_and_strength_zero_is_uniform():
    from demasked_ros.training.data import frame_sampling_weights

    labels = np.zeros((3, 10, 10), np.uint8)
    labels[1, :2, :2] = 9  # 4 % pedestrian
    labels[2, 0, 0] = 10  # 1 % bicyclist
    weights = frame_sampling_weights(labels, strength=2.0)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[1] > weights[0] and weights[2] > weights[0]
    np.testing.assert_allclose(frame_sampling_weights(labels, strength=0.0), 1 / 3)


def test_photometric_knobs_change_the_image_and_are_off_by_default():
    from demasked_ros.training.data import AugmentConfig, photometric

    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    rng = np.random.default_rng(1)
    assert photometric(image, AugmentConfig(), rng) is image
    for knob in ({"saturation": 0.5}, {"gamma": 0.5}, {"blur_probability": 1.0}, {"noise_std": 10.0}):
        out = photometric(image, AugmentConfig(**knob), np.random.default_rng(2))
        assert out.shape == image.shape and out.dtype == np.uint8 and not np.array_equal(out, image), knob
