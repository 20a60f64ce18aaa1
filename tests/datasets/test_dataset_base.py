"""The frame-source interface: strict iteration, array checks and the layout registry."""

from pathlib import Path

import numpy as np
import pytest

from demasked_ros.datasets import base
from demasked_ros.datasets.base import (
    DatasetError,
    DatasetLayout,
    Frame,
    FrameError,
    FrameSource,
    check_frame_arrays,
    open_dataset,
    register_layout,
    registered_layouts,
    strict_frames,
)


def _frame(index: int) -> Frame:
    return Frame(index, index * 10, np.zeros((2, 3, 3), np.uint8), None, f"f{index}", "test")


def test_strict_frames_passes_frames_and_raises_on_an_error_record():
    good = list(strict_frames(iter([_frame(0), _frame(1)])))
    assert [f.index for f in good] == [0, 1]
    stream = strict_frames(iter([_frame(0), FrameError(1, 10, "f1", "test", "broken")]))
    assert next(stream).index == 0
    with pytest.raises(DatasetError, match=r"frame 1 .*broken"):
        next(stream)


@pytest.mark.parametrize("image, labels", [
    (np.zeros((2, 3, 3), np.float32), None),
    (np.zeros((2, 3), np.uint8), None),
    (np.zeros((2, 3, 3), np.uint8), np.zeros((2, 3), np.int32)),
    (np.zeros((2, 3, 3), np.uint8), np.zeros((3, 2), np.uint8)),
])
def test_check_frame_arrays_rejects_bad_arrays(image, labels):
    with pytest.raises(DatasetError):
        check_frame_arrays(image, labels)


@pytest.mark.parametrize("labels", [None, np.zeros((2, 3), np.uint8), np.zeros((2, 3), np.uint16)])
def test_check_frame_arrays_accepts_uint8_and_uint16_labels_or_none(labels):
    assert check_frame_arrays(np.zeros((2, 3, 3), np.uint8), labels) is None


@pytest.mark.parametrize("dtype", [np.int16, np.uint32, np.int64, np.float32, bool])
def test_check_frame_arrays_rejects_other_label_types(dtype):
    with pytest.raises(DatasetError, match="uint8/uint16"):
        check_frame_arrays(np.zeros((2, 3, 3), np.uint8), np.zeros((2, 3), dtype))


class _ListSource:
    """A minimal reader of a made-up layout: one frame per ``*.npy`` image file."""

    def __init__(self, root: Path, split: str = "all") -> None:
        self.files = sorted((root / split).glob("*.npy"))

    @property
    def class_info(self):
        return None

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        return strict_frames(self.iter_records())

    def iter_records(self, indices=None):
        for i, path in enumerate(self.files):
            if indices is None or i in indices:
                yield Frame(i, i, np.load(path), None, path.name, str(path.parent))


def test_a_registered_layout_is_detected_and_opened(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "_LAYOUTS", dict(registered_layouts()))
    (tmp_path / "all").mkdir()
    np.save(tmp_path / "all" / "a.npy", np.full((4, 5, 3), 7, np.uint8))
    register_layout(DatasetLayout(name="npy", splits=("all",), matches=lambda p: (p / "all").is_dir(),
                                  open=_ListSource, description="all/*.npy"))
    assert "npy" in registered_layouts() and "camvid" in registered_layouts()
    source = open_dataset(tmp_path)
    assert isinstance(source, FrameSource) and len(source) == 1
    assert int(next(iter(source)).image[0, 0, 0]) == 7
    assert len(open_dataset(tmp_path / "all")) == 1  # a split folder works too


def test_open_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nothing")
    with pytest.raises(DatasetError, match="known dataset layout"):
        open_dataset(tmp_path)
