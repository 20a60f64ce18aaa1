"""The branch engine: soundness (branch isolation), determinism, fail-closed behaviour."""

import numpy as np
import pytest

from demasked_ros.core.certify import detect, recover
from demasked_ros.core.masks import MaskSet, detection_masks, recovery_masks
from demasked_ros.engines.certifier import Certifier, ChunkedExecutor
from demasked_ros.engines.demaskers import NavierStokesDemasker, SolidFillDemasker, TeleaDemasker
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.learned_demasker import default_learned_demasker
from demasked_ros.engines.segmenters import CallableSegmenter
from tests.tiny_models import CLASS_NAMES, colour_rule, colour_segmenter

DEMASKERS = [TeleaDemasker(), NavierStokesDemasker(), SolidFillDemasker(), SolidFillDemasker((90, 20, 200)),
             default_learned_demasker(threads=1)]


def scene(height=48, width=64, seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 3] = (40, 60, 200)
    image[height // 3:] = (90, 90, 90)
    image[height // 2:, width // 4: width // 2] = (200, 30, 30)
    noise = rng.integers(0, 30, size=image.shape, dtype=np.uint8)
    return image + noise


def mask_sets(height=48, width=64):
    return [recovery_masks(height, width, (6, 8), s) for s in ("column", "row", "3-mask", "4-mask")] + [
        detection_masks(height, width, (6, 8), a) for a in ("column", "row")]


@pytest.mark.parametrize("demasker", DEMASKERS, ids=lambda d: type(d).__name__)
@pytest.mark.parametrize("masks", mask_sets(), ids=lambda m: f"{m.mode}-{m.scheme}")
def test_changing_masked_pixels_leaves_each_branch_bit_identical(demasker, masks):
    certifier = Certifier(colour_segmenter(), demasker, masks)
    image = scene()
    reference = certifier.certify(image).branch_labels
    rng = np.random.default_rng(7)
    for branch in range(masks.k):
        tampered = image.copy()
        hidden = ~masks.visible[branch]
        tampered[hidden] = rng.integers(0, 256, size=(int(hidden.sum()), 3), dtype=np.uint8)
        result = certifier.certify(tampered)
        np.testing.assert_array_equal(result.branch_labels[branch], reference[branch])


def test_demaskers_called_directly_ignore_masked_values():
    masks = recovery_masks(48, 64, (6, 8), "column")
    rng = np.random.default_rng(3)
    batch = np.repeat(scene()[None], masks.k, axis=0)
    noisy = batch.copy()
    noisy[~masks.visible] = rng.integers(0, 256, size=(int((~masks.visible).sum()), 3), dtype=np.uint8)
    for demasker in DEMASKERS:
        clean_out = demasker.demask(batch, masks.visible)
        np.testing.assert_array_equal(demasker.demask(noisy, masks.visible), clean_out)
        np.testing.assert_array_equal(clean_out[masks.visible], batch[masks.visible])


@pytest.mark.parametrize("masks", mask_sets(), ids=lambda m: f"{m.mode}-{m.scheme}")
def test_same_frame_twice_gives_identical_results(masks):
    certifier = Certifier(colour_segmenter(), TeleaDemasker(), masks)
    first, second = certifier.certify(scene()), certifier.certify(scene())
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.certified, second.certified)
    np.testing.assert_array_equal(first.branch_labels, second.branch_labels)


def test_recovery_result_is_the_vote_over_branches():
    masks = recovery_masks(48, 64, (6, 8), "column")
    result = Certifier(colour_segmenter(), TeleaDemasker(), masks).certify(scene())
    labels, certified = recover(result.branch_labels)
    np.testing.assert_array_equal(result.labels, labels)
    np.testing.assert_array_equal(result.certified, certified)
    assert result.mode == "recovery"
    assert 0.0 < result.certified_fraction <= 1.0
    np.testing.assert_array_equal(result.alert, ~result.certified)
    assert set(result.timings) >= {"masking", "demasking", "segmentation", "aggregation", "total"}


def test_detection_outputs_plain_segmentation_and_verifies_against_it():
    masks = detection_masks(48, 64, (6, 8), "column")
    image = scene()
    result = Certifier(colour_segmenter(), TeleaDemasker(), masks).certify(image)
    plain = colour_rule(image[None])[0]
    np.testing.assert_array_equal(result.labels, plain)
    np.testing.assert_array_equal(result.certified, detect(plain, result.branch_labels))


def test_detection_alerts_on_a_pasted_patch():
    masks = detection_masks(48, 64, (12, 16), "column")
    image = scene()
    attacked = image.copy()
    attacked[2:14, 20:36] = (0, 255, 0)  # a green patch in the sky changes f(x) there
    result = Certifier(colour_segmenter(), TeleaDemasker(), masks).certify(attacked)
    assert result.alert[2:14, 20:36].any()


@pytest.mark.parametrize("chunk", [1, 2, 3, None])
def test_chunking_does_not_change_results(chunk):
    masks = recovery_masks(48, 64, (6, 8), "4-mask")
    whole = Certifier(colour_segmenter(), TeleaDemasker(), masks).certify(scene())
    chunked = Certifier(colour_segmenter(), TeleaDemasker(), masks, chunk_size=chunk).certify(scene())
    np.testing.assert_array_equal(whole.branch_labels, chunked.branch_labels)


def test_chunk_ranges_cover_all_branches():
    assert [(s.start, s.stop) for s in ChunkedExecutor(2).chunks(5)] == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(EngineError):
        ChunkedExecutor(0)


def test_a_failing_branch_fails_closed():
    calls = {"n": 0}

    def flaky(images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("GPU fell off the bus")
        return colour_rule(images)

    masks = recovery_masks(48, 64, (6, 8), "column")
    certifier = Certifier(CallableSegmenter(flaky, CLASS_NAMES), TeleaDemasker(), masks, chunk_size=1)
    with pytest.raises(EngineError, match="GPU fell off the bus"):
        certifier.certify(scene())


@pytest.mark.parametrize("bad_output", [
    lambda images: colour_rule(images)[:, :-1],
    lambda images: colour_rule(images).astype(np.float32),
    lambda images: colour_rule(images) + 10,
    lambda images: colour_rule(images)[:1],
])
def test_wrong_segmenter_output_is_an_engine_error(bad_output):
    masks = recovery_masks(48, 64, (6, 8), "column")
    with pytest.raises(EngineError):
        Certifier(CallableSegmenter(bad_output, CLASS_NAMES), SolidFillDemasker(), masks).certify(scene())


def test_wrong_demasker_output_is_an_engine_error():
    class Shrinking:
        def demask(self, images, visible):
            return images[:, :-1]

    masks = recovery_masks(48, 64, (6, 8), "column")
    with pytest.raises(EngineError, match="demasker returned"):
        Certifier(colour_segmenter(), Shrinking(), masks).certify(scene())


@pytest.mark.parametrize("frame", [np.zeros((48, 64, 3), np.float32), np.zeros((48, 63, 3), np.uint8),
                                   np.zeros((48, 64), np.uint8), np.zeros((48, 64, 4), np.uint8)])
def test_frames_of_the_wrong_type_or_size_are_rejected(frame):
    masks = recovery_masks(48, 64, (6, 8), "column")
    with pytest.raises(EngineError, match="frame must be"):
        Certifier(colour_segmenter(), SolidFillDemasker(), masks).certify(frame)


def test_unsound_masks_are_refused():
    good = recovery_masks(48, 64, (6, 4), "column")
    claimed = MaskSet(visible=good.visible, t=2, mode="recovery", patch=(6, 8), scheme="column")
    with pytest.raises(EngineError, match="unsound"):
        Certifier(colour_segmenter(), SolidFillDemasker(), claimed)
