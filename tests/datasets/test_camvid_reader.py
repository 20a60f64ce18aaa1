"""CamVid folder reader: a tiny synthetic layout (always) and the real data (skipped when absent)."""

import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from demasked_ros.core.classes import CAMVID
from demasked_ros.datasets import (
    CamVidSource,
    DatasetError,
    FrameError,
    FrameSource,
    camvid_clip,
    find_camvid_root,
    open_dataset,
)


def _real_camvid_root() -> Path | None:
    configured = os.environ.get("DEMASKED_CAMVID")
    root = Path(configured) if configured else (
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid")
    return root.resolve() if (root / "val").is_dir() and (root / "valannot").is_dir() else None


REAL = _real_camvid_root()
needs_camvid = pytest.mark.skipif(
    REAL is None, reason="CamVid not found: set DEMASKED_CAMVID or put it in ../shared/data/camvid")


def _write_pair(root: Path, split: str, name: str, image: np.ndarray, labels: np.ndarray) -> None:
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(root / split / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert cv2.imwrite(str(root / f"{split}annot" / name), labels)


@pytest.fixture
def fake_camvid(tmp_path):
    """Three 20x30 frames of sequence SEQ at 30 fps indices 10, 12, 14 and one of SEQB."""
    rng = np.random.default_rng(0)
    pairs = {}
    rows = ["sequence\tframe_index_30fps\tsplit\tfile"]
    for name, sequence, index in [("SEQ_00010.png", "SEQ", 10), ("SEQ_00012.png", "SEQ", 12),
                                  ("SEQ_00014.png", "SEQ", 14), ("SEQB_00003.png", "SEQB", 3)]:
        image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
        labels = rng.integers(0, 12, (20, 30), dtype=np.uint8)
        _write_pair(tmp_path, "val", name, image, labels)
        pairs[name] = (image, labels)
        rows.append(f"{sequence}\t{index}\tval\t{name}")
    (tmp_path / "sequences.tsv").write_text("\n".join(rows) + "\n")
    return tmp_path, pairs


def test_reads_images_and_labels_exactly(fake_camvid):
    root, pairs = fake_camvid
    source = CamVidSource(root, "val")
    assert isinstance(source, FrameSource) and source.class_info is CAMVID
    frames = list(source)
    assert [f.name for f in frames] == sorted(pairs)
    for frame in frames:
        image, labels = pairs[frame.name]
        assert np.array_equal(frame.image, image)  # RGB order, lossless PNG
        assert np.array_equal(frame.labels, labels)
        assert frame.labels.dtype == np.uint8


def test_stamps_follow_the_sequence_table(fake_camvid):
    root, _ = fake_camvid
    frames = list(CamVidSource(root, "val"))
    stamps = {f.name: f.stamp_ns for f in frames}
    period = 1_000_000_000 / 30
    assert stamps["SEQ_00012.png"] - stamps["SEQ_00010.png"] == round(12 * period) - round(10 * period)
    ordered = [f.stamp_ns for f in frames]
    assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered)
    # A subset keeps the stamps of the full split.
    subset = CamVidSource(root, "val", names=["SEQ_00014.png"])
    assert next(iter(subset)).stamp_ns == stamps["SEQ_00014.png"]


def test_without_table_frames_are_30fps_by_position(fake_camvid):
    root, _ = fake_camvid
    (root / "sequences.tsv").unlink()
    stamps = [f.stamp_ns for f in CamVidSource(root, "val")]
    assert stamps == [round(i * 1_000_000_000 / 30) for i in range(4)]


def test_selection_by_names_range_and_limit(fake_camvid):
    root, _ = fake_camvid
    assert CamVidSource(root, names=["SEQ_00014.png", "SEQB_00003.png"]).names == [
        "SEQB_00003.png", "SEQ_00014.png"]
    assert CamVidSource(root, first="SEQ_00010.png", last="SEQ_00012.png").names == [
        "SEQ_00010.png", "SEQ_00012.png"]
    assert len(CamVidSource(root, limit=2)) == 2
    with pytest.raises(DatasetError, match="no such files"):
        CamVidSource(root, names=["nope.png"])
    with pytest.raises(DatasetError, match="empty"):
        CamVidSource(root, first="ZZZ")


def test_bad_files_are_reported_not_dropped(fake_camvid):
    root, _ = fake_camvid
    (root / "val" / "SEQ_00012.png").write_bytes(b"not a png")
    cv2.imwrite(str(root / "valannot" / "SEQ_00014.png"), np.full((20, 30), 200, np.uint8))
    cv2.imwrite(str(root / "valannot" / "SEQB_00003.png"), np.zeros((10, 30), np.uint8))
    records = list(CamVidSource(root).iter_records())
    assert len(records) == 4
    errors = {r.name: r.message for r in records if isinstance(r, FrameError)}
    assert set(errors) == {"SEQ_00012.png", "SEQ_00014.png", "SEQB_00003.png"}
    assert "cannot read image" in errors["SEQ_00012.png"]
    assert "void" in errors["SEQ_00014.png"]
    assert "labels are" in errors["SEQB_00003.png"]
    with pytest.raises(DatasetError):
        list(CamVidSource(root))


def test_index_filter_and_pickle(fake_camvid):
    root, _ = fake_camvid
    source = CamVidSource(root)
    picked = list(pickle.loads(pickle.dumps(source)).iter_records({2}))
    assert [r.index for r in picked] == [2]


def test_missing_folders_are_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        CamVidSource(tmp_path, "val")
    (tmp_path / "val").mkdir()
    with pytest.raises(DatasetError, match="label folder"):
        CamVidSource(tmp_path, "val")



def test_images_only_reading_needs_no_label_folder(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    (tmp_path / "val").mkdir()
    assert cv2.imwrite(str(tmp_path / "val" / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert not (tmp_path / "valannot").exists()
    with pytest.raises(DatasetError, match="label folder"):
        CamVidSource(tmp_path, "val")
    (frame,) = list(CamVidSource(tmp_path, "val", with_labels=False))
    assert frame.labels is None and frame.name == "a.png"
    assert np.array_equal(frame.image, image)


def test_open_dataset_detects_layout_and_split_folder(fake_camvid):
    root, _ = fake_camvid
    assert len(open_dataset(root)) == 4
    from_split = open_dataset(root / "val")
    assert isinstance(from_split, CamVidSource) and from_split.split == "val"
    with pytest.raises(DatasetError, match="split"):
        open_dataset(root / "val", split="train")
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        open_dataset(root, layout="ade20k")
    with pytest.raises(DatasetError, match="not in a known dataset layout"):
        open_dataset(root / "valannot")


def test_find_camvid_root_honours_the_environment(fake_camvid, monkeypatch):
    root, _ = fake_camvid
    monkeypatch.setenv("DEMASKED_CAMVID", str(root))
    assert find_camvid_root() == root.resolve()
    monkeypatch.setenv("DEMASKED_CAMVID", str(root / "missing"))
    assert find_camvid_root() is None
    with pytest.raises(DatasetError, match="CamVid not found"):
        camvid_clip()


@needs_camvid
def test_real_camvid_clip_is_101_frames_at_15hz():
    clip = camvid_clip(REAL)
    assert len(clip) == 101
    assert clip.names[0] == "0016E5_07959.png" and clip.names[-1] == "0016E5_08159.png"
    frames = list(clip.iter_records({0, 1, 100}))
    assert all(not isinstance(f, FrameError) for f in frames)
    assert frames[1].stamp_ns - frames[0].stamp_ns == pytest.approx(1e9 / 15, abs=1)
    assert frames[2].stamp_ns - frames[0].stamp_ns == pytest.approx(100 * 1e9 / 15, abs=1)
    for frame in frames:
        assert frame.image.shape == (360, 480, 3) and frame.labels.shape == (360, 480)
        assert int(frame.labels.max()) <= CAMVID.ignore_index


@needs_camvid
def test_real_camvid_train_split_has_unique_increasing_stamps():
    source = CamVidSource(REAL, "train")
    assert len(source) == 367
    stamps = source.stamps_ns
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
