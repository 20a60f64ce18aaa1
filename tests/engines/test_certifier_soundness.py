"""Soundness of the Certifier itself, not of the shipped demaskers (issue 13).

* A spy demasker records what the Certifier hands it: only zeros at masked pixels, the frame's
  own values at visible pixels, the masks in order, every branch exactly once, for every scheme
  (recovery, detection column/row/block, DRS).
* Branch isolation at the Certifier level with a demasker that *reads* masked pixels: it is safe
  only because the Certifier zeroes them. A leaky demasker that blends the raw frame in through a
  side channel is the negative control: the same isolation check must catch it.
* Batch-mate independence: a branch alone equals the same branch in a batch of random mates.
* Fail-closed guards: an executor that returns too few, too many or malformed branches.
"""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.core.masks import MaskSet, detection_masks, recovery_masks
from demasked_ros.core.masks_drs import drs_column_masks
from demasked_ros.engines.certifier import Certifier, ChunkedExecutor, StageClock
from demasked_ros.engines.demaskers import NavierStokesDemasker, SolidFillDemasker, TeleaDemasker
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.learned_demasker import default_learned_demasker
from demasked_ros.engines.segmenters import OnnxSegmenter
from tests.tiny_models import CLASS_NAMES, colour_rule, colour_segmenter, write_conv_model

HEIGHT, WIDTH, PATCH = 48, 64, (6, 8)


def frame(seed: int = 0) -> np.ndarray:
    """A frame with no zero-valued channel anywhere, so a leaked masked pixel is never 0."""
    rng = np.random.default_rng(seed)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[: HEIGHT // 3] = (40, 60, 200)
    image[HEIGHT // 3:] = (90, 90, 90)
    image[HEIGHT // 2:, WIDTH // 4: WIDTH // 2] = (200, 30, 30)
    return image + rng.integers(1, 30, size=image.shape, dtype=np.uint8)


def every_scheme() -> list[MaskSet]:
    return [
        *(recovery_masks(HEIGHT, WIDTH, PATCH, s) for s in ("column", "row", "3-mask", "4-mask")),
        recovery_masks(HEIGHT, WIDTH, PATCH, "column", k=7),
        *(detection_masks(HEIGHT, WIDTH, PATCH, a) for a in ("column", "row")),
        detection_masks(HEIGHT, WIDTH, (10, 12), "block"),  # K = 20 (49 with the 6 x 8 patch)
        drs_column_masks(HEIGHT, WIDTH, PATCH, band_width=8, stride=4),
    ]


def scheme_id(masks: MaskSet) -> str:
    return f"{masks.mode}-{masks.scheme}-K{masks.k}"


class SpyDemasker:
    """Records every batch it is given and fills masked pixels with a constant."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.visible: list[np.ndarray] = []

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        self.images.append(images.copy())
        self.visible.append(visible.copy())
        return np.where(visible[..., None], images, np.uint8(128))


class InputReadingDemasker:
    """Fills each masked pixel from the value it was given there: sound only if those are zeroed.

    This is the user's demasker the issue worries about: it breaks the Demasker contract (reads
    masked pixels), so the Certifier's zeroing is the only thing keeping branches isolated.
    """

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        blended = (images.astype(np.int32) * 3 // 4 + 40).astype(np.uint8)
        return np.where(visible[..., None], images, blended)


class RawFrameLeaker:
    """Negative control: blends the raw, unmasked frame (held through a side channel) into the fill."""

    def __init__(self) -> None:
        self.raw: np.ndarray | None = None

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        assert self.raw is not None
        raw = np.broadcast_to(self.raw, images.shape)
        return np.where(visible[..., None], images, raw // 2 + 60).astype(np.uint8)


def leaking_branches(certifier: Certifier, image: np.ndarray, before_certify=None,
                     seed: int = 7) -> list[int]:
    """Branches whose labels change when only that branch's masked pixels are rewritten at random.

    The Certifier-level isolation check: an empty list means every branch depends only on its
    visible pixels (for this frame and these tampered copies).
    """
    rng = np.random.default_rng(seed)
    if before_certify:
        before_certify(image)
    reference = certifier.certify(image).branch_labels
    leaks = []
    for branch in range(certifier.masks.k):
        hidden = ~certifier.masks.visible[branch]
        if not hidden.any():
            continue
        tampered = image.copy()
        tampered[hidden] = rng.integers(0, 256, size=(int(hidden.sum()), 3), dtype=np.uint8)
        if before_certify:
            before_certify(tampered)
        if not np.array_equal(certifier.certify(tampered).branch_labels[branch], reference[branch]):
            leaks.append(branch)
    return leaks


@pytest.mark.parametrize("chunk", [None, 2])
@pytest.mark.parametrize("masks", every_scheme(), ids=scheme_id)
def test_spy_demasker_sees_only_zeros_at_masked_pixels(masks, chunk):
    spy = SpyDemasker()
    image = frame()
    Certifier(colour_segmenter(), spy, masks, chunk_size=chunk).certify(image)
    images = np.concatenate(spy.images)
    visible = np.concatenate(spy.visible)
    assert images.shape == (masks.k, HEIGHT, WIDTH, 3), "every branch exactly once"
    np.testing.assert_array_equal(visible, masks.visible)  # the masks, in order
    assert visible.dtype == bool
    assert not images[~visible].any(), "a masked pixel reached the demasker with a non-zero value"
    np.testing.assert_array_equal(images[visible], np.broadcast_to(image, images.shape)[visible])


@pytest.mark.parametrize("masks", every_scheme(), ids=scheme_id)
def test_demasker_reading_masked_pixels_is_isolated_by_the_certifier(masks):
    certifier = Certifier(colour_segmenter(), InputReadingDemasker(), masks)
    assert leaking_branches(certifier, frame()) == []


@pytest.mark.parametrize("masks", every_scheme()[:1] + every_scheme()[5:], ids=scheme_id)
def test_negative_control_leaky_demasker_is_caught_by_the_isolation_check(masks):
    """If this passes with an empty list, the isolation check above could not see a leak at all."""
    leaker = RawFrameLeaker()

    def feed(image: np.ndarray) -> None:
        leaker.raw = image

    certifier = Certifier(colour_segmenter(), leaker, masks)
    leaks = leaking_branches(certifier, frame(), before_certify=feed)
    assert len(leaks) == masks.k, f"only branches {leaks} of {masks.k} flagged"


def test_leaky_demasker_changes_the_certificate_too():
    """The leak is not academic: tampering with masked pixels changes certified output labels."""
    leaker = RawFrameLeaker()
    masks = recovery_masks(HEIGHT, WIDTH, PATCH, "column")
    certifier = Certifier(colour_segmenter(), leaker, masks)
    image = frame()
    leaker.raw = image
    clean = certifier.certify(image)
    patch = image.copy()
    patch[10:16, 20:28] = (0, 255, 0)  # one patch-sized square
    leaker.raw = patch
    attacked = certifier.certify(patch)
    # Recovery certifies every pixel against any patch, the pixels under the patch included.
    broken = (clean.labels != attacked.labels) & clean.certified
    assert broken.any()
    # The same attack against a sound demasker never changes a certified label.
    sound = Certifier(colour_segmenter(), InputReadingDemasker(), masks)
    before, after = sound.certify(image), sound.certify(patch)
    assert not ((before.labels != after.labels) & before.certified).any()


# --- A branch alone equals the same branch among random batch-mates (rule 2). ---


def batch_mates(rng: np.random.Generator, masks: MaskSet, branch: int, mates: int, image: np.ndarray):
    """A batch with ``image`` masked by ``masks.visible[branch]`` at a random slot among random mates."""
    slot = int(rng.integers(0, mates + 1))
    images = rng.integers(0, 256, size=(mates + 1, *image.shape), dtype=np.uint8)
    visible = masks.visible[rng.integers(0, masks.k, size=mates + 1)].copy()
    images[slot], visible[slot] = image, masks.visible[branch]
    images[~visible] = 0
    return images, visible, slot


@pytest.mark.parametrize("demasker", [TeleaDemasker(), NavierStokesDemasker(), SolidFillDemasker(),
                                      default_learned_demasker(threads=1)], ids=lambda d: type(d).__name__)
@pytest.mark.parametrize("masks", every_scheme()[::2], ids=scheme_id)
def test_demasked_branch_does_not_depend_on_its_batch_mates(demasker, masks):
    rng = np.random.default_rng(11)
    image = frame(3)
    for branch in (0, masks.k - 1):
        alone_images, alone_visible = image[None].copy(), masks.visible[branch][None]
        alone_images[~alone_visible] = 0
        alone = demasker.demask(alone_images, alone_visible)[0]
        for mates in (1, 4):
            images, visible, slot = batch_mates(rng, masks, branch, mates, image)
            np.testing.assert_array_equal(demasker.demask(images, visible)[slot], alone)


def test_onnx_segmenter_branch_does_not_depend_on_its_batch_mates(tmp_path):
    segmenter = OnnxSegmenter(write_conv_model(tmp_path / "m.onnx", kernel=5), CLASS_NAMES,
                              intra_op_threads=2)
    rng = np.random.default_rng(5)
    image = frame(4)
    alone = segmenter.segment(image[None])[0]
    for mates in (1, 4):
        batch = rng.integers(0, 256, size=(mates + 1, HEIGHT, WIDTH, 3), dtype=np.uint8)
        slot = int(rng.integers(0, mates + 1))
        batch[slot] = image
        np.testing.assert_array_equal(segmenter.segment(batch)[slot], alone)


@pytest.mark.parametrize("masks", every_scheme()[::3], ids=scheme_id)
def test_certifier_branch_labels_do_not_depend_on_chunking_or_on_the_other_branches(masks):
    """Each branch of a Certifier run equals that branch computed alone (chunk of one)."""
    demasker = default_learned_demasker(threads=1)
    image = frame(5)
    whole = Certifier(colour_segmenter(), demasker, masks).certify(image).branch_labels
    for branch in range(masks.k):
        single = MaskSet(visible=masks.visible[branch:branch + 1], t=0, mode="detection",
                         patch=masks.patch, scheme="single")
        labels = ChunkedExecutor().run(image, single, demasker, colour_segmenter(), StageClock())
        np.testing.assert_array_equal(labels[0], whole[branch])


# --- Fail closed on a misbehaving executor. ---


class FixedExecutor:
    """An executor returning whatever it was built with (a stand-in for a broken GPU executor)."""

    def __init__(self, make) -> None:
        self.make = make

    def run(self, image, masks, demasker, segmenter, clock):
        return self.make(image, masks)


def good_labels(image: np.ndarray, masks: MaskSet) -> np.ndarray:
    return np.repeat(colour_rule(image[None]), masks.k, axis=0)


@pytest.mark.parametrize("mode", ["recovery", "detection"])
@pytest.mark.parametrize("make", [
    lambda image, masks: good_labels(image, masks)[:-1],                                 # one too few
    lambda image, masks: np.concatenate([good_labels(image, masks)] * 2)[: masks.k + 1],  # one too many
    lambda image, masks: good_labels(image, masks)[:0],                                  # none
    lambda image, masks: good_labels(image, masks)[:, :, :-1],                           # wrong size
    lambda image, masks: good_labels(image, masks).astype(np.float32),                   # not labels
    lambda image, masks: good_labels(image, masks) + len(CLASS_NAMES),                   # unknown class
    lambda image, masks: good_labels(image, masks) - len(CLASS_NAMES),                   # negative
    lambda image, masks: list(good_labels(image, masks)),                                # not an array
    lambda image, masks: None,
], ids=["too-few", "too-many", "none", "wrong-size", "float", "class-too-large", "negative", "list",
        "None"])
def test_executor_returning_wrong_branches_fails_closed(make, mode):
    masks = recovery_masks(HEIGHT, WIDTH, PATCH, "column") if mode == "recovery" else \
        detection_masks(HEIGHT, WIDTH, PATCH, "column")
    certifier = Certifier(colour_segmenter(), SolidFillDemasker(), masks, executor=FixedExecutor(make))
    with pytest.raises(EngineError, match="executor returned"):
        certifier.certify(frame())


def test_a_correct_custom_executor_is_used_and_accepted():
    masks = recovery_masks(HEIGHT, WIDTH, PATCH, "column")
    certifier = Certifier(colour_segmenter(), SolidFillDemasker(), masks, executor=FixedExecutor(good_labels))
    result = certifier.certify(frame())
    np.testing.assert_array_equal(result.labels, colour_rule(frame()[None])[0])
    assert result.certified.all()


def test_an_executor_raising_fails_closed_with_the_cause():
    def boom(image, masks):
        raise MemoryError("CUDA out of memory")

    masks = recovery_masks(HEIGHT, WIDTH, PATCH, "column")
    certifier = Certifier(colour_segmenter(), SolidFillDemasker(), masks, executor=FixedExecutor(boom))
    with pytest.raises(EngineError, match="MemoryError: CUDA out of memory"):
        certifier.certify(frame())


# --- Stage timings and error paths of the Certifier itself. ---


class TickClock:
    """Stands in for the ``time`` module: perf_counter advances by exactly 1 per call."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


@pytest.mark.parametrize(("mode", "chunk"), [("recovery", 1), ("recovery", 2), ("recovery", None),
                                             ("detection", 3)])
def test_stage_timings_accumulate_one_lap_per_chunk(monkeypatch, mode, chunk):
    import demasked_ros.engines.certifier as certifier_module
    import demasked_ros.engines.executors as executors_module

    clock = TickClock()  # one clock for the Certifier and its executor's stage laps
    monkeypatch.setattr(certifier_module, "time", clock)
    monkeypatch.setattr(executors_module, "time", clock)
    masks = recovery_masks(HEIGHT, WIDTH, PATCH, "column") if mode == "recovery" else \
        detection_masks(HEIGHT, WIDTH, PATCH, "column")
    certifier = Certifier(colour_segmenter(), SolidFillDemasker(), masks, chunk_size=chunk)
    assert certifier.executor.chunk_size == chunk
    timings = certifier.certify(frame()).timings
    laps = -(-masks.k // (chunk or masks.k))  # chunks per frame
    extra = 1 if mode == "detection" else 0  # f(x) is segmented once more
    measured = 3 * laps + extra + 1  # stage laps; each reads the clock twice
    assert timings == {"masking": laps, "demasking": laps, "segmentation": laps + extra,
                       "aggregation": 1.0, "total": 2 * measured + 1}


def test_a_demasker_returning_the_wrong_type_fails_closed():
    class Floats:
        def demask(self, images, visible):
            return images.astype(np.float32)

    class Listing:
        def demask(self, images, visible):
            return list(images)

    masks = recovery_masks(HEIGHT, WIDTH, PATCH, "column")
    for demasker, returned in ((Floats(), r"\(5, 48, 64, 3\)"), (Listing(), "<class 'list'>")):
        message = rf"^demasker returned {returned}, expected uint8 \(5, 48, 64, 3\)$"
        with pytest.raises(EngineError, match=message):
            Certifier(colour_segmenter(), demasker, masks).certify(frame())


def test_a_failing_segmentation_of_the_plain_frame_fails_closed():
    def only_batches(images):
        if len(images) == 1:
            raise RuntimeError("no single frames today")
        return colour_rule(images)

    from demasked_ros.engines.segmenters import CallableSegmenter

    masks = detection_masks(HEIGHT, WIDTH, PATCH, "column")
    certifier = Certifier(CallableSegmenter(only_batches, CLASS_NAMES), SolidFillDemasker(), masks)
    with pytest.raises(EngineError, match=r"^segmentation of the frame failed: no single frames today"):
        certifier.certify(frame())


def test_chunk_size_errors_and_masks_refusal_say_why():
    with pytest.raises(EngineError, match=r"^chunk_size must be >= 1 or None, got 0"):
        ChunkedExecutor(0)
    good = recovery_masks(HEIGHT, WIDTH, (6, 4), "column")
    claimed = MaskSet(visible=good.visible, t=2, mode="recovery", patch=(6, 8), scheme="column")
    with pytest.raises(EngineError, match=r"^refusing unsound masks: recovery column"):
        Certifier(colour_segmenter(), SolidFillDemasker(), claimed)


@pytest.mark.parametrize(("make", "message"), [
    (lambda image, masks: None, "<class 'NoneType'> branch labels, expected (5, 48, 64)"),
    (lambda image, masks: list(good_labels(image, masks)),
     "<class 'list'> branch labels, expected (5, 48, 64)"),
    (lambda image, masks: good_labels(image, masks)[:-1], "(4, 48, 64) branch labels, expected (5, 48, 64)"),
    (lambda image, masks: good_labels(image, masks).astype(np.float32),
     "float32 branch labels, expected integers"),
    (lambda image, masks: good_labels(image, masks) + 9, "branch labels outside 0..3"),
    (lambda image, masks: np.full((masks.k, HEIGHT, WIDTH), len(CLASS_NAMES)), "branch labels outside 0..3"),
    (lambda image, masks: np.full((masks.k, HEIGHT, WIDTH), -1), "branch labels outside 0..3"),
])
def test_executor_errors_say_what_was_returned(make, message):
    masks = recovery_masks(HEIGHT, WIDTH, PATCH, "column")
    certifier = Certifier(colour_segmenter(), SolidFillDemasker(), masks, executor=FixedExecutor(make))
    with pytest.raises(EngineError) as raised:
        certifier.certify(frame())
    assert str(raised.value) == f"executor returned {message}"


@pytest.mark.parametrize(("bad", "got"), [
    (np.zeros((HEIGHT, WIDTH, 3), np.float32), "(48, 64, 3) float32"),
    (np.zeros((HEIGHT, WIDTH - 1, 3), np.uint8), "(48, 63, 3) uint8"),
    ([[0, 0, 0]], "<class 'list'> "),
])
def test_bad_frame_errors_say_what_was_given(bad, got):
    masks = recovery_masks(HEIGHT, WIDTH, PATCH, "column")
    with pytest.raises(EngineError) as raised:
        Certifier(colour_segmenter(), SolidFillDemasker(), masks).certify(bad)
    assert str(raised.value) == f"frame must be uint8 (48, 64, 3) (the masks' size), got {got}"
