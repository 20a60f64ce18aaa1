"""Exhaustive mask-geometry checks: every patch position, independent brute force."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from demasked_ros.core.errors import CoreError
from demasked_ros.core.geometry import (
    hiding_masks_per_position,
    masks_affected_per_position,
    verify_masks,
    window_sums,
)
from demasked_ros.core.masks import RECOVERY_T, MaskSet, detection_masks, recovery_masks

SCHEMES = sorted(RECOVERY_T)
# (height, width, patch spec): the node's defaults, odd sizes, sizes not multiples of the patch.
SIZES = [
    (360, 480, 0.005), (360, 480, 0.01), (360, 480, 0.02), (100, 77, (10, 7)), (37, 53, (5, 4)),
    (64, 64, (8, 8)), (31, 29, (31, 1)), (17, 90, (3, 17)), (1, 9, (1, 2)),
]


def touches_visible(plane: np.ndarray, patch: tuple[int, int]) -> np.ndarray:
    """Brute force, independent of the integral-image code: does each patch position see a visible pixel?"""
    ph, pw = patch
    across = sliding_window_view(plane, pw, axis=1).any(axis=-1)
    return np.asarray(sliding_window_view(across, ph, axis=0).any(axis=-1))


def brute_affected(masks: MaskSet) -> np.ndarray:
    return np.sum([touches_visible(plane, masks.patch).astype(np.int32) for plane in masks.visible], axis=0)


def brute_hidden(masks: MaskSet) -> np.ndarray:
    hidden = [(~touches_visible(plane, masks.patch)).astype(np.int32) for plane in masks.visible]
    return np.sum(hidden, axis=0)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("height", "width", "spec"), SIZES)
def test_recovery_no_patch_affects_more_than_t_masks(height, width, spec, scheme):
    masks = recovery_masks(height, width, spec, scheme)
    assert masks.mode == "recovery"
    assert masks.t == RECOVERY_T[scheme]
    assert masks.k == 2 * masks.t + 1
    assert masks.visible.shape == (masks.k, height, width)
    affected = brute_affected(masks)
    assert affected.shape == (height - masks.patch[0] + 1, width - masks.patch[1] + 1)
    assert affected.max() <= masks.t
    np.testing.assert_array_equal(affected, masks_affected_per_position(masks))
    verify_masks(masks)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("height", "width", "spec"), SIZES)
def test_recovery_every_pixel_visible_in_exactly_one_mask_made_of_whole_blocks(height, width, spec, scheme):
    masks = recovery_masks(height, width, spec, scheme)
    np.testing.assert_array_equal(masks.visible.sum(axis=0), 1)
    ph, pw = masks.patch
    owner = masks.visible.argmax(axis=0)
    for r0 in range(0, height, ph):
        for c0 in range(0, width, pw):
            block = owner[r0:r0 + ph, c0:c0 + pw]
            assert (block == block[0, 0]).all(), "a block is split between masks"


@pytest.mark.parametrize("scheme", ["column", "row"])
def test_column_and_row_bound_is_reached(scheme):
    masks = recovery_masks(360, 480, 0.005, scheme)
    assert brute_affected(masks).max() == 2


def test_four_mask_places_all_masks_in_every_3x3_block_window():
    masks = recovery_masks(90, 90, (10, 10), "4-mask")
    owner = masks.visible.argmax(axis=0)[::10, ::10]
    for r in range(owner.shape[0] - 2):
        for c in range(owner.shape[1] - 2):
            assert set(owner[r:r + 3, c:c + 3].ravel()) == set(range(9))


def test_three_mask_follows_appendix_b_pairing():
    masks = recovery_masks(40, 60, (10, 10), "3-mask")
    owner = masks.visible.argmax(axis=0)[::10, ::10]
    # Row 1: {1}, {2,3}, {4,5}, {6} -> masks 0, 1, 1, 2, 2, 3; row 2 continues at 4 with pairs;
    # the counter runs on across rows and wraps at K = 7: row 3 starts at 7 = 0, row 4 at 4.
    np.testing.assert_array_equal(owner[0], [0, 1, 1, 2, 2, 3])
    np.testing.assert_array_equal(owner[1], [4, 4, 5, 5, 6, 6])
    np.testing.assert_array_equal(owner[2], [0, 1, 1, 2, 2, 3])
    np.testing.assert_array_equal(owner[3], [4, 4, 5, 5, 6, 6])
    wider = recovery_masks(30, 50, (10, 10), "3-mask", k=11).visible.argmax(axis=0)[::10, ::10]
    np.testing.assert_array_equal(wider, [[0, 1, 1, 2, 2], [3, 3, 4, 4, 5], [6, 7, 7, 8, 8]])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_n_patches_raise_k(scheme):
    masks = recovery_masks(120, 160, 0.01, scheme, n_patches=2)
    assert masks.k == 4 * RECOVERY_T[scheme] + 1
    assert masks.n_patches == 2 and "N=2" in masks.describe()
    assert brute_affected(masks).max() <= masks.t
    verify_masks(masks)
    with pytest.raises(CoreError, match="K >= 2"):
        recovery_masks(120, 160, 0.01, scheme, n_patches=2, k=masks.k - 1)


def test_larger_k_is_allowed_and_still_sound():
    masks = recovery_masks(100, 77, (10, 7), "column", k=7)
    assert masks.k == 7
    verify_masks(masks)


def test_blocks_smaller_than_the_patch_fail_the_check():
    small = recovery_masks(100, 77, (10, 5), "column")
    claimed = MaskSet(visible=small.visible, t=2, mode="recovery", patch=(10, 7), scheme="column")
    assert brute_affected(claimed).max() > 2
    with pytest.raises(CoreError, match="can affect"):
        verify_masks(claimed)


def test_masks_are_read_only():
    masks = recovery_masks(36, 48, (6, 6), "column")
    with pytest.raises(ValueError):
        masks.visible[0, 0, 0] = False


@pytest.mark.parametrize(("bad", "message"), [
    (dict(scheme="diagonal"), "unknown recovery scheme 'diagonal'"),
    (dict(n_patches=0), "n_patches must be a positive integer, got 0"),
    (dict(n_patches=1.5), "n_patches must be a positive integer, got 1.5"),
    (dict(spec=2.0), None),
])
def test_recovery_bad_arguments(bad, message):
    args = dict(spec=0.01, scheme="column", n_patches=1) | bad
    with pytest.raises(CoreError, match=message):
        recovery_masks(100, 100, args["spec"], args["scheme"], n_patches=args["n_patches"])


@pytest.mark.parametrize("axis", ["column", "row", "block"])
@pytest.mark.parametrize(("height", "width", "spec"), SIZES)
def test_detection_every_patch_position_is_hidden_by_some_mask(height, width, spec, axis):
    masks = detection_masks(height, width, spec, axis)
    assert masks.mode == "detection"
    hidden = brute_hidden(masks)
    assert hidden.min() >= 1
    np.testing.assert_array_equal(hidden, hiding_masks_per_position(masks))
    verify_masks(masks)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 9, 16])
@pytest.mark.parametrize("axis", ["column", "row"])
def test_detection_sized_by_k(k, axis):
    masks = detection_masks(360, 480, 0.01, axis, k=k)
    assert 1 <= masks.k <= k
    assert brute_hidden(masks).min() >= 1


@pytest.mark.parametrize("band", [42, 43, 60, 84, 200, 480])
def test_detection_sized_by_band_width_uses_lemma_1_stride(band):
    masks = detection_masks(360, 480, 0.01, "column", mask_width=band)
    hidden_cols = [np.flatnonzero(~m[0]) for m in masks.visible]
    starts = [int(c[0]) for c in hidden_cols]
    assert all(len(c) == band for c in hidden_cols)
    assert starts[0] == 0 and starts[-1] == 480 - band  # last band on the image edge
    assert all(b - a <= band - 42 + 1 for a, b in itertools.pairwise(starts))
    assert brute_hidden(masks).min() >= 1


def test_default_detection_band_is_twice_the_patch():
    masks = detection_masks(360, 480, 0.01, "column")
    assert masks.band == (360, 84)
    assert masks.k == 11 and masks.t == 10


def test_too_large_stride_fails_the_same_check():
    patch, band = 42, 84
    stride = band - patch + 2  # one more than Lemma 1 allows
    starts = [*list(range(0, 480 - band + 1, stride)), 480 - band]
    visible = np.ones((len(starts), 360, 480), dtype=bool)
    for index, start in enumerate(starts):
        visible[index, :, start:start + band] = False
    masks = MaskSet(visible=visible, t=len(starts) - 1, mode="detection", patch=(patch, patch),
                    scheme="column")
    assert brute_hidden(masks).min() == 0
    with pytest.raises(CoreError, match="hidden by no mask"):
        verify_masks(masks)


@pytest.mark.parametrize("bad", [dict(axis="diag"), dict(k=0), dict(mask_width=10), dict(mask_width=500),
                                 dict(k=3, mask_width=50), dict(mask_width=(50, 50))])
def test_detection_bad_arguments(bad):
    args = dict(axis="column", k=None, mask_width=None) | bad
    with pytest.raises(CoreError):
        detection_masks(360, 480, 0.01, args["axis"], k=args["k"], mask_width=args["mask_width"])


def test_window_sums_match_direct_sums():
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 5, size=(13, 17))
    sums = window_sums(plane, (4, 3))
    for i in range(sums.shape[0]):
        for j in range(sums.shape[1]):
            assert sums[i, j] == plane[i:i + 4, j:j + 3].sum()


@st.composite
def image_and_patch(draw):
    height = draw(st.integers(1, 70))
    width = draw(st.integers(1, 70))
    ph = draw(st.integers(1, height))
    pw = draw(st.integers(1, width))
    return height, width, (ph, pw)


@settings(max_examples=150, deadline=None)
@given(image_and_patch(), st.sampled_from(SCHEMES), st.integers(1, 3))
def test_property_recovery_bound_holds_for_random_sizes(size, scheme, n_patches):
    height, width, patch = size
    masks = recovery_masks(height, width, patch, scheme, n_patches=n_patches)
    assert masks.k == 2 * n_patches * masks.t + 1
    assert brute_affected(masks).max() <= masks.t
    np.testing.assert_array_equal(masks.visible.sum(axis=0), 1)


@settings(max_examples=150, deadline=None)
@given(image_and_patch(), st.sampled_from(["column", "row", "block"]), st.data())
def test_property_detection_hides_every_patch_for_random_sizes(size, axis, data):
    height, width, patch = size
    if data.draw(st.booleans()):
        masks = detection_masks(height, width, patch, axis, k=data.draw(st.integers(1, 12)))
    else:
        masks = detection_masks(height, width, patch, axis)
    assert brute_hidden(masks).min() >= 1


def test_verify_masks_refuses_too_few_masks_for_the_claimed_patches():
    masks = recovery_masks(40, 60, (10, 10), "column")  # K = 5 = 2*1*2+1
    verify_masks(masks)
    claimed = MaskSet(visible=masks.visible, t=2, mode="recovery", patch=(10, 10), scheme="column",
                      n_patches=2)
    with pytest.raises(CoreError, match=r"K=5 T=2 patch=10x10 N=2 image=40x60: K must be >= 2\*N\*T\+1 = 9"):
        verify_masks(claimed)


def test_verify_masks_names_the_first_uncovered_patch_and_unknown_modes():
    visible = np.ones((2, 10, 12), bool)
    visible[0, :, 0:4] = False  # hides patches starting at columns 0..1
    visible[1, :, 5:12] = False  # hides patches starting at columns 5..9
    masks = MaskSet(visible=visible, t=1, mode="detection", patch=(10, 3), scheme="column")
    np.testing.assert_array_equal(hiding_masks_per_position(masks), [[1, 1, 0, 0, 0, 1, 1, 1, 1, 1]])
    with pytest.raises(CoreError, match=r"3 patch positions are hidden by no mask, "
                                        r"e\.g\. the patch at row 0, column 2"):
        verify_masks(masks)
    odd = MaskSet(visible=visible, t=1, mode="other", patch=(10, 3), scheme="column")
    with pytest.raises(CoreError, match="unknown mask mode 'other'"):
        verify_masks(odd)


def test_affected_and_hiding_counts_on_a_hand_made_set():
    visible = np.zeros((3, 4, 5), bool)
    visible[0, 0, 0] = True      # one visible pixel in the top-left corner
    visible[1, 3, 4] = True      # one in the bottom-right corner
    visible[2] = True            # everything visible
    masks = MaskSet(visible=visible, t=2, mode="recovery", patch=(2, 2), scheme="hand")
    np.testing.assert_array_equal(masks_affected_per_position(masks), [
        [2, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 2]])
    np.testing.assert_array_equal(hiding_masks_per_position(masks), [
        [1, 2, 2, 2], [2, 2, 2, 2], [2, 2, 2, 1]])
    np.testing.assert_array_equal(window_sums(visible[2].astype(np.int32), (2, 2)), np.full((3, 4), 4))
    # Counts are integer arrays (callers index and print them as counts).
    assert masks_affected_per_position(masks).dtype == np.int32
    assert hiding_masks_per_position(masks).dtype == np.int32
    assert window_sums(visible[0], (2, 2)).dtype == np.int64
