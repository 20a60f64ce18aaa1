import numpy as np
import pytest

from demasked_ros.core.errors import CoreError
from demasked_ros.core.geometry import masks_affected_per_position, verify_masks
from demasked_ros.core.masks_drs import drs_column_masks, drs_parameters_for_width


def test_drs_masks_have_wrapping_visible_bands_and_exact_t():
    masks = drs_column_masks(36, 48, (6, 6), band_width=8, stride=4)
    assert masks.k == 12 and masks.scheme == "drs-column"
    assert (masks.visible.sum(axis=2) == 8).all()
    assert masks.visible[11, 0, :4].all()  # the last band wraps around the right edge
    # a 6-wide patch touches bands starting within 13 columns: ceil((6 + 8 - 1) / 4) = 4
    assert masks.t == 4
    assert masks_affected_per_position(masks).max() == masks.t
    verify_masks(masks)


def brute_affected(visible: np.ndarray, patch: tuple[int, int]) -> np.ndarray:
    """Masks whose visible pixels each patch position touches: explicit loops, no integral image."""
    k, height, width = visible.shape
    ph, pw = patch
    counts = np.zeros((height - ph + 1, width - pw + 1), np.int64)
    for row in range(height - ph + 1):
        for col in range(width - pw + 1):
            counts[row, col] = sum(bool(visible[m, row:row + ph, col:col + pw].any()) for m in range(k))
    return counts


def expected_visible_columns(width: int, band: int, stride: int) -> list[set[int]]:
    """Mask i shows columns i*stride .. i*stride+band-1, wrapping at the right edge."""
    return [{(i * stride + j) % width for j in range(band)} for i in range(-(-width // stride))]


@pytest.mark.parametrize(("height", "width", "patch", "band", "stride"), [
    (6, 48, (2, 6), 8, 4), (5, 31, (3, 5), 7, 3), (4, 40, (4, 1), 1, 1), (3, 50, (2, 9), 5, 30),
    (4, 37, (1, 37), 10, 7), (5, 29, (2, 4), 29, 5),
])
def test_drs_masks_and_t_match_a_loop_brute_force(height, width, patch, band, stride):
    masks = drs_column_masks(height, width, patch, band_width=band, stride=stride)
    expected = expected_visible_columns(width, band, stride)
    assert masks.k == len(expected)
    for visible, columns in zip(masks.visible, expected, strict=True):
        assert set(np.flatnonzero(visible[0]).tolist()) == columns
        assert (visible == visible[0]).all()  # whole columns
    affected = brute_affected(masks.visible, masks.patch)
    assert masks.t == affected.max()
    np.testing.assert_array_equal(masks_affected_per_position(masks), affected)
    if masks.k >= 2 * masks.t + 1:
        verify_masks(masks)
    else:
        with pytest.raises(CoreError):
            verify_masks(masks)


@pytest.mark.parametrize(("band", "stride"), [(4, 9), (40, 21), (5, 30)])
def test_drs_t_at_full_width(band, stride):
    masks = drs_column_masks(30, 480, 0.005 * 360 / 30, band_width=band, stride=stride)
    # One row suffices: the masks are whole columns.
    assert masks.t == brute_affected(masks.visible[:, :masks.patch[0]], masks.patch).max()


def test_drs_parameters_scale_with_width():
    assert drs_parameters_for_width(512) == (42, 22)
    band, stride = drs_parameters_for_width(480)
    assert (band, stride) == (39, 21)
    assert drs_parameters_for_width(5120) == (420, 220)
    assert drs_parameters_for_width(10) == (1, 1)  # never below one column
    assert drs_parameters_for_width(1) == (1, 1)


def test_drs_bad_arguments():
    with pytest.raises(CoreError, match=r"band width must be in 1\.\.10, got 0"):
        drs_column_masks(10, 10, (2, 2), band_width=0, stride=1)
    with pytest.raises(CoreError, match=r"band width must be in 1\.\.10, got 11"):
        drs_column_masks(10, 10, (2, 2), band_width=11, stride=1)
    with pytest.raises(CoreError, match=r"stride must be in 1\.\.10, got 11"):
        drs_column_masks(10, 10, (2, 2), band_width=3, stride=11)
    with pytest.raises(CoreError, match=r"stride must be in 1\.\.10, got 0"):
        drs_column_masks(10, 10, (2, 2), band_width=3, stride=0)
    assert np.all(drs_column_masks(10, 10, (2, 2), 10, 10).visible)
