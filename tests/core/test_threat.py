import math

import pytest

from demasked_ros.core.errors import CoreError
from demasked_ros.core.threat import patch_shape


@pytest.mark.parametrize(("fraction", "side"), [(0.005, 30), (0.01, 42), (0.001, 14), (0.02, 59)])
def test_fraction_gives_square_patch_covering_at_least_the_fraction(fraction, side):
    ph, pw = patch_shape(360, 480, fraction)
    assert (ph, pw) == (side, side)
    assert ph * pw >= fraction * 360 * 480
    assert (ph - 1) ** 2 < fraction * 360 * 480


def test_exact_square_area_is_not_rounded_up():
    assert patch_shape(100, 100, 0.01) == (10, 10)
    assert patch_shape(100, 100, 0.0081) == (9, 9)


def test_explicit_patch_is_kept():
    assert patch_shape(100, 77, (10, 7)) == (10, 7)


@pytest.mark.parametrize("spec", [0.0, -0.1, 1.5, math.nan, (0, 5), (5, 0), (101, 5), (5, 78), (2.5, 3),
                                  "big", True, (1, 2, 3)])
def test_bad_specs_raise_value_error(spec):
    with pytest.raises(ValueError):
        patch_shape(100, 77, spec)


def test_fraction_that_does_not_fit_a_thin_image_raises():
    with pytest.raises(CoreError, match="does not fit"):
        patch_shape(10, 1000, 0.5)


def test_bad_image_size_raises():
    with pytest.raises(CoreError):
        patch_shape(0, 10, 0.1)
