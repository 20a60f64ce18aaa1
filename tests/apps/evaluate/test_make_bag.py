"""demasked-make-bag: bags from the procedural generator and dataset folders, read back exactly."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from demasked_ros.apps.evaluate.make_bag import (
    DEFAULT_START_S,
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_WRITE_FAILED,
    main,
)
from demasked_ros.core.classes import CAMVID
from demasked_ros.datasets import CamVidSource, ProceduralSource
from demasked_ros.rosio.bagio import BagFrameSource

SMALL = ["--height", "36", "--width", "48"]


def _real_camvid_root() -> Path | None:
    configured = os.environ.get("DEMASKED_CAMVID")
    root = Path(configured) if configured else (
        Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "camvid")
    return root.resolve() if (root / "val").is_dir() and (root / "valannot").is_dir() else None


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_procedural_bag_round_trip(tmp_path, storage):
    out = tmp_path / "drive"
    assert main([str(out), "--procedural", "3", "--seed", "4", "--rate", "10", "--storage", storage,
                 "--quiet", *SMALL]) == EXIT_OK
    expected = list(ProceduralSource(3, seed=4, height=36, width=48, rate_hz=10))
    source = BagFrameSource(out)
    read = list(source)
    assert source.class_info == CAMVID
    start = round(DEFAULT_START_S * 1e9)
    assert [f.stamp_ns for f in read] == [start, start + 100_000_000, start + 200_000_000]
    for original, copy in zip(expected, read, strict=True):
        assert np.array_equal(original.image, copy.image)
        assert np.array_equal(original.labels, copy.labels)
    with Reader(out) as reader:
        assert reader.connections[0].ext.serialization_format == "cdr"
        assert {c.topic: c.msgtype for c in reader.connections} == {
            "/camera/image_raw": "sensor_msgs/msg/Image", "/camera/labels": "sensor_msgs/msg/Image"}
        assert reader.message_count == 6


def test_compressed_frames_and_custom_topics(tmp_path):
    out = tmp_path / "png"
    assert main([str(out), "--procedural", "2", "--compression", "png", "--label-topic", "/gt",
                 "--start-time", "5", "--quiet", *SMALL]) == EXIT_OK
    source = BagFrameSource(out, label_topic="/gt")  # "/gt" is not recognisable as labels by name
    assert source.image_topic == "/camera/image_raw/compressed" and source.label_topic == "/gt"
    assert source.image_type == "sensor_msgs/msg/CompressedImage"
    expected = list(ProceduralSource(2, seed=0, height=36, width=48))
    read = list(source)
    assert read[0].stamp_ns == 5_000_000_000
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
               for a, b in zip(expected, read, strict=True))
    assert main([str(tmp_path / "jpg"), "--procedural", "1", "--compression", "jpeg", "--no-labels",
                 "--quiet", *SMALL]) == EXIT_OK
    jpeg = BagFrameSource(tmp_path / "jpg")
    assert jpeg.label_topic is None and jpeg.class_info is None


def test_dataset_folder_with_a_bad_file(tmp_path):
    root = tmp_path / "camvid"
    for split in ("val", "valannot"):
        (root / split).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(3):
        image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "val" / f"s_{i:03d}.png"), image)
        cv2.imwrite(str(root / "valannot" / f"s_{i:03d}.png"), rng.integers(0, 12, (20, 30), dtype=np.uint8))
    (root / "val" / "s_001.png").write_bytes(b"broken")
    out = tmp_path / "bag"
    assert main([str(out), "--dataset", str(root), "--storage", "sqlite3", "--quiet"]) == EXIT_PARTIAL
    read = list(BagFrameSource(out))
    good = [r for r in CamVidSource(root).iter_records() if not hasattr(r, "message")]
    assert len(read) == 2
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
               for a, b in zip(good, read, strict=True))
    assert read[1].stamp_ns - read[0].stamp_ns == round(2e9 / 15)  # frame 2 keeps its slot in time
    assert main([str(tmp_path / "one"), "--dataset", str(root / "val"), "--limit", "1", "--quiet"]) == EXIT_OK
    assert len(BagFrameSource(tmp_path / "one")) == 1


def test_error_exit_codes(tmp_path, capsys, monkeypatch):
    assert main([str(tmp_path / "a"), "--dataset", str(tmp_path / "missing")]) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setenv("DEMASKED_CAMVID", str(tmp_path / "missing"))
    assert main([str(tmp_path / "a"), "--dataset", "camvid", "--clip"]) == EXIT_BAD_INPUT
    assert "CamVid not found" in capsys.readouterr().err
    assert main([str(tmp_path / "b"), "--procedural", "1", "--quiet", *SMALL]) == EXIT_OK
    assert main([str(tmp_path / "b"), "--procedural", "1", *SMALL]) == EXIT_WRITE_FAILED
    assert "exists" in capsys.readouterr().err
    assert main([str(tmp_path / "b"), "--procedural", "2", "--overwrite", "--quiet", *SMALL]) == EXIT_OK
    assert len(BagFrameSource(tmp_path / "b")) == 2
    for bad in (["--rate", "0"], ["--jpeg-quality", "0"], ["--clip"], ["--storage", "rosbag1"]):
        with pytest.raises(SystemExit) as stop:
            main([str(tmp_path / "c"), "--procedural", "1", *bad])
        assert stop.value.code == 2
    assert not (tmp_path / "c").exists()


def test_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "demasked_ros.apps.evaluate.make_bag", "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "--procedural" in result.stdout


@pytest.mark.camvid
def test_real_camvid_clip_bag(tmp_path):
    root = _real_camvid_root()
    if root is None:
        pytest.skip("CamVid not found: set DEMASKED_CAMVID or put it in ../shared/data/camvid")
    out = tmp_path / "clip"
    assert main([str(out), "--dataset", "camvid", "--root", str(root), "--clip", "--limit", "3",
                 "--quiet"]) == EXIT_OK
    read = list(BagFrameSource(out))
    clip = list(CamVidSource(root, "val", first="0016E5_07959.png", limit=3))
    assert clip[0].name == "0016E5_07959.png"
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
               for a, b in zip(clip, read, strict=True))
