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


@pytest.mark.parametrize(("band", "stride"), [(1, 1), (40, 21), (5, 30)])
def test_drs_t_matches_brute_force(band, stride):
    masks = drs_column_masks(30, 480, 0.005 * 360 / 30, band_width=band, stride=stride)
    assert masks_affected_per_position(masks).max() == masks.t


def test_drs_parameters_scale_with_width():
    assert drs_parameters_for_width(512) == (42, 22)
    band, stride = drs_parameters_for_width(480)
    assert (band, stride) == (39, 21)


def test_drs_bad_arguments():
    with pytest.raises(CoreError):
        drs_column_masks(10, 10, (2, 2), band_width=0, stride=1)
    with pytest.raises(CoreError):
        drs_column_masks(10, 10, (2, 2), band_width=3, stride=11)
    assert np.all(drs_column_masks(10, 10, (2, 2), 10, 10).visible)
