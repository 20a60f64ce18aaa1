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


def test_widened_patch_takes_each_axis_from_its_own_sizes():
    # rows 12 -> 6 (factor 2), columns 30 -> 10 (factor 3)
    assert widened_patch((3, 3), (12, 30), (6, 10), block_average) == (2, 2)
    assert widened_patch((5, 4), (12, 30), (6, 10), block_average) == (3, 2)


def test_a_patch_as_large_as_the_frame_is_allowed():
    assert widened_extent(12, 12, 6, block_average) == 6
    assert widened_extent(1, 1, 1, lambda a, n: a) == 1


def by_dependency(depends: np.ndarray):
    """A linear 'resize' whose output row i averages the source rows j with depends[i, j]."""
    weights = depends / np.maximum(depends.sum(axis=1, keepdims=True), 1)

    def resize_rows(array, rows):
        assert rows == depends.shape[0]
        # The AxisResize contract: float32 planes and uint8 three-channel frames, as images are.
        assert (array.dtype, array.ndim) in ((np.float32, 2), (np.uint8, 3))
        if array.dtype == np.float32:
            return weights.astype(np.float32) @ array
        mixed = np.tensordot(weights, array.astype(np.float64), axes=(1, 0))
        return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)

    return resize_rows


def brute_widened_extent(patch: int, depends: np.ndarray) -> int:
    """Widest span of output rows touched by any window of `patch` source rows (explicit loops)."""
    target, source = depends.shape
    widest = 0
    for start in range(source - patch + 1):
        rows = [i for i in range(target) if depends[i, start:start + patch].any()]
        if rows:
            widest = max(widest, rows[-1] - rows[0] + 1)
    return max(widest, 1)


@pytest.mark.parametrize("seed", range(20))
def test_widened_extent_matches_brute_force_for_arbitrary_operators(seed):
    rng = np.random.default_rng(seed)
    source, target = int(rng.integers(2, 15)), int(rng.integers(1, 12))
    depends = rng.random((target, source)) < rng.uniform(0.05, 0.4)
    if seed % 4 == 0:  # the last source pixel reaches furthest: the last window position matters
        depends[:, :-1] = False
        depends[:, -1] = True
    np.testing.assert_array_equal(dependency_matrix(source, target, by_dependency(depends)), depends)
    for patch in range(1, source + 1):
        assert widened_extent(patch, source, target, by_dependency(depends)) == \
            brute_widened_extent(patch, depends), (patch, depends.astype(int))


def test_bad_patch_extent():
    with pytest.raises(CoreError, match=r"patch extent 0 must be in 1\.\.10"):
        widened_extent(0, 10, 5, block_average)
    with pytest.raises(CoreError, match=r"patch extent 11 must be in 1\.\.10"):
        widened_extent(11, 10, 5, block_average)
    with pytest.raises(CoreError, match=r"resize returned \(6, 6\), expected \(3, 6\)"):
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
