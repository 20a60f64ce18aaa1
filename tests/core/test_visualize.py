import numpy as np
import pytest

from demasked_ros.core.classes import CAMVID, ClassInfo
from demasked_ros.core.errors import CoreError
from demasked_ros.core.visualize import UNCERTIFIED_COLOR, certification_image, colorize, overlay


def test_colorize_uses_the_palette_and_blacks_out_unknown_labels():
    labels = np.array([[0, 3], [11, -1]])
    rgb = colorize(labels, CAMVID.colors)
    assert tuple(rgb[0, 0]) == CAMVID.colors[0]
    assert tuple(rgb[0, 1]) == CAMVID.colors[3]
    assert tuple(rgb[1, 0]) == (0, 0, 0) and tuple(rgb[1, 1]) == (0, 0, 0)


def test_certification_image_is_255_where_certified():
    np.testing.assert_array_equal(certification_image(np.array([[True, False]])), [[255, 0]])


def test_overlay_marks_uncertified_pixels():
    image = np.full((16, 16, 3), 100, np.uint8)
    labels = np.zeros((16, 16), int)
    certified = np.ones((16, 16), bool)
    certified[:, 8:] = False
    out = overlay(image, labels, certified, CAMVID.colors)
    assert out.dtype == np.uint8 and out.shape == image.shape
    right = out[:, 8:].reshape(-1, 3)
    assert (right == UNCERTIFIED_COLOR).all(axis=1).any()
    assert not (out[:, :8].reshape(-1, 3) == UNCERTIFIED_COLOR).all(axis=1).any()
    with pytest.raises(CoreError):
        overlay(image, labels[:4], certified, CAMVID.colors)


def test_class_info_validation():
    assert CAMVID.num_classes == 11
    with pytest.raises(CoreError):
        ClassInfo(names=("a",), colors=())
    with pytest.raises(CoreError):
        ClassInfo(names=("a",), colors=((0, 0, 300),))
