import numpy as np
import pytest

from demasked_ros.core.errors import CoreError
from demasked_ros.core.resize import dependency_matrix, widened_extent, widened_patch


def block_average(array, rows):
    """Exact 1-D downscale by an integer factor: each output row averages `factor` input rows."""
    factor = array.shape[0] // rows
    return array[: rows * factor].reshape(rows, factor, *array.shape[1:]).mean(axis=1)


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


def test_uint8_path_wider_than_float32_path_is_caught():
    """A backend whose uint8 (frame) path reaches one row further than its float32 path."""

    def split_backend(array, rows):
        out = block_average(array.astype(np.float64), rows)
        if array.dtype == np.uint8:  # e.g. an accelerated fixed-point kernel with a wider support
            out[1:] = (out[1:] + block_average(np.roll(array, -1, axis=0).astype(np.float64), rows)[1:]) / 2
        return out

    float_only = np.abs(split_backend(np.eye(12, dtype=np.float32), 6)) > 0
    depends = dependency_matrix(12, 6, split_backend)
    assert (depends & ~float_only).any()  # the uint8 impulses found dependencies float32 missed
    assert widened_extent(4, 12, 6, split_backend) > widened_extent(4, 12, 6, block_average)


def test_uint8_impulses_see_every_channel():
    """A resize that leaks a pixel's influence only into the third channel is still measured."""

    def leaky(array, rows):
        out = block_average(array.astype(np.float64), rows)
        if array.ndim == 3:
            out[0, :, 2] = out[0, :, 2] + (array[-1, :, 2] != 128)
        return out

    assert dependency_matrix(12, 6, leaky)[0, -1]
    assert not dependency_matrix(12, 6, block_average)[0, -1]


@pytest.mark.parametrize(("frame", "budget", "expected"), [
    ((2160, 3840), 640 * 480, (415, 739)), ((1080, 1920), 480 * 360, (311, 554)),
    ((360, 480), 480 * 360, None), ((480, 640), 640 * 480, None), ((1000, 10), 100, (100, 1)),
])
def test_fit_within_keeps_the_aspect_and_the_budget(frame, budget, expected):
    from demasked_ros.core.resize import fit_within

    size = fit_within(frame, budget)
    assert size == expected
    if size is not None:
        assert size[0] * size[1] <= budget
        assert abs(size[0] / size[1] - frame[0] / frame[1]) < 0.01 * frame[0] / frame[1] + 1 / size[1]
        # one more row or column (keeping the aspect) would not fit: the largest such size
        assert (size[0] + 1) * (size[1] + 1) > budget


def test_fit_within_rejects_bad_input():
    from demasked_ros.core.resize import fit_within

    with pytest.raises(CoreError):
        fit_within((0, 10), 100)
