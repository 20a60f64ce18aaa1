"""Procedural street scenes: determinism, exact CamVid label set, geometry, and the smooth drive."""

import itertools
import pickle

import numpy as np
import pytest

from demasked_ros.core.classes import CAMVID
from demasked_ros.datasets import procedural
from demasked_ros.datasets.base import DatasetError, FrameSource
from demasked_ros.datasets.procedural import ProceduralSource, street_scene

REQUIRED = {0, 1, 2, 3, 4, 5, 8}  # sky, building, pole, road, pavement, tree, car
ALLOWED = set(range(CAMVID.num_classes)) | {CAMVID.ignore_index}


@pytest.fixture(scope="module")
def scenes():
    return {seed: street_scene(seed) for seed in range(5)}


def test_same_seed_gives_identical_scene(scenes):
    image, labels = street_scene(3)
    assert np.array_equal(image, scenes[3][0])
    assert np.array_equal(labels, scenes[3][1])


def test_different_seeds_give_different_scenes(scenes):
    assert not np.array_equal(scenes[0][0], scenes[1][0])
    assert not np.array_equal(scenes[0][1], scenes[1][1])


def test_shapes_and_types(scenes):
    for image, labels in scenes.values():
        assert image.shape == (360, 480, 3) and image.dtype == np.uint8
        assert labels.shape == (360, 480) and labels.dtype == np.uint8


def test_every_scene_has_the_street_classes_and_only_camvid_ids(scenes):
    for seed, (_, labels) in scenes.items():
        present = set(np.unique(labels).tolist())
        assert present >= REQUIRED, f"seed {seed} lacks {REQUIRED - present}"
        assert present <= ALLOWED, f"seed {seed} has ids {present - ALLOWED}"


def test_layout_is_a_street_sky_above_road(scenes):
    for _, labels in scenes.values():
        rows = np.arange(labels.shape[0])[:, None]
        sky_rows = np.broadcast_to(rows, labels.shape)[labels == 0]
        road_rows = np.broadcast_to(rows, labels.shape)[labels == 3]
        assert sky_rows.max() < road_rows.min()
        fractions = np.bincount(labels.ravel(), minlength=12) / labels.size
        assert 0.15 < fractions[3] < 0.7  # road
        assert fractions[1] > 0.05  # buildings
        assert fractions[11] < 0.03  # void only at the far end of the street


def test_labels_follow_the_painted_image(scenes):
    # Coarse sanity of the colours per class (dark asphalt versus light sky, green leaves).
    for image, labels in scenes.values():
        brightness = image.astype(float).mean(axis=2)
        assert brightness[labels == 0].mean() > brightness[labels == 3].mean() + 20
        leaves = image[labels == 5].astype(float).mean(axis=0)
        assert leaves[1] > leaves[2]  # trees are green rather than blue


@pytest.mark.parametrize("seed", range(5))
def test_every_label_edge_is_an_edge_of_the_painted_polygons_pixel_by_pixel(seed, monkeypatch):
    """Exact labels, pixel by pixel: with texture and blur switched off, the image is the flat
    colours of the painted polygons; every pair of neighbouring pixels with different labels must
    then differ in colour (a label map shifted or painted from other polygons would not)."""
    monkeypatch.setattr(procedural._Renderer, "_texture", lambda self, canvas, labels: canvas.copy())
    flat, labels = street_scene(seed)
    flat = np.asarray(flat, dtype=np.float64)
    for axis in (0, 1):
        label_edge = np.diff(labels.astype(np.int32), axis=axis) != 0
        colour_step = np.abs(np.diff(flat, axis=axis)).max(axis=2)
        assert label_edge.sum() > 1000
        rows, cols = np.nonzero(label_edge & (colour_step < 1e-3))
        assert rows.size == 0, f"label edges without a colour edge at {np.c_[rows, cols][:5].tolist()}"


def test_texture_does_not_move_the_labels(scenes, monkeypatch):
    """Texturing only shades pixels: the flat render and the textured one share the label map."""
    monkeypatch.setattr(procedural._Renderer, "_texture", lambda self, canvas, labels: canvas.copy())
    for seed in (0, 3):
        assert np.array_equal(street_scene(seed)[1], scenes[seed][1])


def test_requested_size_is_honoured():
    image, labels = street_scene(7, height=120, width=200)
    assert image.shape == (120, 200, 3) and labels.shape == (120, 200)


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"seed": 0, "height": 8}, {"seed": 0, "width": 4}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(DatasetError):
        street_scene(**kwargs)


def test_drive_is_a_frame_source_with_rate_stamps():
    source = ProceduralSource(4, seed=2, height=72, width=96, rate_hz=10.0, start_ns=5)
    assert isinstance(source, FrameSource)
    assert source.class_info is CAMVID
    frames = list(source)
    assert len(source) == len(frames) == 4
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.stamp_ns for f in frames] == [5, 100_000_005, 200_000_005, 300_000_005]
    assert all(f.labels is not None and f.labels.shape == (72, 96) for f in frames)


def test_first_frame_of_a_drive_is_the_street_scene():
    frame = ProceduralSource(3, seed=4, height=90, width=120).frame(0)
    image, labels = street_scene(4, height=90, width=120)
    assert np.array_equal(frame.image, image) and np.array_equal(frame.labels, labels)


def test_drive_moves_continuously():
    frames = list(ProceduralSource(12, seed=1, height=120, width=160, rate_hz=15.0))
    steps = [np.abs(a.image.astype(int) - b.image.astype(int)).mean() for a, b in itertools.pairwise(frames)]
    span = np.abs(frames[0].image.astype(int) - frames[-1].image.astype(int)).mean()
    assert all(step > 0 for step in steps)  # it moves
    assert max(steps) < span  # neighbours are closer than the ends of the drive
    label_change = [(a.labels != b.labels).mean() for a, b in itertools.pairwise(frames)]
    assert max(label_change) < 0.25


def test_records_can_be_selected_and_source_pickled():
    source = ProceduralSource(5, seed=9, height=48, width=64)
    picked = list(source.iter_records({1, 3}))
    assert [r.index for r in picked] == [1, 3]
    clone = pickle.loads(pickle.dumps(source))
    assert np.array_equal(clone.frame(3).image, picked[1].image)


@pytest.mark.parametrize("kwargs", [
    {"n_frames": 0}, {"n_frames": 2, "rate_hz": 0.0}, {"n_frames": 2, "seed": -3}])
def test_drive_rejects_bad_arguments(kwargs):
    with pytest.raises(DatasetError):
        ProceduralSource(**kwargs)


def test_frame_index_out_of_range():
    with pytest.raises(DatasetError):
        ProceduralSource(2, height=32, width=32).frame(2)
