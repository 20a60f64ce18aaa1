import numpy as np
import pytest

from demasked_ros.core.errors import CoreError
from demasked_ros.core.resize import dependency_matrix, widened_extent, widened_patch


def block_average(array, rows):
    """Exact 1-D downscale by an integer factor: each output row averages `factor` input rows."""
    factor = array.shape[0] // rows
    return array[: rows * factor].reshape(rows, factor, -1).mean(axis=1)


def test_dependency_matrix_of_block_average():
    depends = dependency_matrix(6, 3, block_average)
    np.testing.assert_array_equal(depends, [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]])


@pytest.mark.parametrize(("patch", "expected"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_widened_extent_worst_case_alignment(patch, expected):
    # factor 2: a window of p source rows straddles at most ceil((p + 1) / 2) output rows
    assert widened_extent(patch, 12, 6, block_average) == expected


def test_identity_resize_keeps_the_patch():
    assert widened_patch((3, 4), (10, 10), (10, 10), lambda a, n: a[:n]) == (3, 4)


def test_bad_patch_extent():
    with pytest.raises(CoreError):
        widened_extent(0, 10, 5, block_average)
    with pytest.raises(CoreError):
        dependency_matrix(6, 3, lambda a, n: a)
