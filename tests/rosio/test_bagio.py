"""rosbag2 I/O: writer/reader round trips in both storages, stamp matching, bad bags and bad frames."""

import pickle
import shutil

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from demasked_ros.core.classes import CAMVID
from demasked_ros.datasets.base import DatasetError, FrameError, FrameSource
from demasked_ros.datasets.procedural import ProceduralSource
from demasked_ros.rosio.bagio import (
    CERTIFICATION_STATUS_TYPE,
    CLASS_INFO_TYPE,
    BagError,
    BagFrameSource,
    BagWriter,
    build_message,
    header_stamp_ns,
    package_typestore,
)

STORAGES = ["mcap", "sqlite3"]
BASE = 1_700_000_000 * 10**9
MS = 1_000_000


@pytest.fixture(scope="module")
def frames():
    return list(ProceduralSource(4, seed=5, height=36, width=48))


def _write(path, frames, storage="mcap", label_offsets=None, skip_label=(), **writer_kwargs):
    """Frames at 15 Hz on /camera/image_raw; labels on /camera/labels shifted by label_offsets[i] ns."""
    with BagWriter(path, storage, class_info=CAMVID, **writer_kwargs) as bag:
        for i, frame in enumerate(frames):
            stamp = BASE + frame.stamp_ns
            if i not in skip_label:
                offset = label_offsets[i] if label_offsets else 0
                bag.write_labels("/camera/labels", stamp + offset, frame.labels)
            bag.write_image("/camera/image_raw", stamp, frame.image)
    return path


@pytest.mark.parametrize("storage", STORAGES)
def test_round_trip_is_bit_identical(tmp_path, frames, storage):
    source = BagFrameSource(_write(tmp_path / "bag", frames, storage))
    assert isinstance(source, FrameSource)
    assert source.image_topic == "/camera/image_raw" and source.label_topic == "/camera/labels"
    assert source.class_info == CAMVID  # recorded in the bag metadata
    read = list(source)
    assert len(source) == len(read) == len(frames)
    for original, copy in zip(frames, read, strict=True):
        assert copy.stamp_ns == BASE + original.stamp_ns
        assert np.array_equal(copy.image, original.image)
        assert np.array_equal(copy.labels, original.labels) and copy.labels.dtype == np.uint8


@pytest.mark.parametrize("storage", STORAGES)
def test_compressed_images(tmp_path, frames, storage):
    with BagWriter(tmp_path / "png", storage) as bag:
        for frame in frames:
            bag.write_compressed("/cam/compressed", BASE + frame.stamp_ns, frame.image, "png")
    with BagWriter(tmp_path / "jpg", storage) as bag:
        bag.write_compressed("/cam/compressed", BASE, frames[0].image, "jpeg", quality=95)
    lossless = list(BagFrameSource(tmp_path / "png"))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(lossless, frames, strict=True))
    assert lossless[0].labels is None
    lossy = next(iter(BagFrameSource(tmp_path / "jpg")))
    assert np.abs(lossy.image.astype(int) - frames[0].image.astype(int)).mean() < 6


def test_mono16_labels_round_trip(tmp_path, frames):
    wide = frames[0].labels.astype(np.uint16) * 300
    with BagWriter(tmp_path / "bag") as bag:
        bag.write_image("/camera/image_raw", BASE, frames[0].image)
        bag.write_labels("/camera/labels", BASE, wide)
    frame = next(iter(BagFrameSource(tmp_path / "bag")))
    assert frame.labels.dtype == np.uint16 and np.array_equal(frame.labels, wide)


def test_labels_match_by_stamp_within_tolerance(tmp_path, frames):
    # Labels 2 ms late, 4 ms early, 9 ms late, and one missing; tolerance 5 ms.
    path = _write(tmp_path / "bag", frames, label_offsets=[2 * MS, -4 * MS, 9 * MS, 0], skip_label={3})
    source = BagFrameSource(path, stamp_tolerance_ns=5 * MS)
    read = list(source)
    assert [f.labels is not None for f in read] == [True, True, False, False]
    assert source.unlabelled == [2, 3]
    assert np.array_equal(read[1].labels, frames[1].labels)
    loose = list(BagFrameSource(path, stamp_tolerance_ns=10 * MS))
    assert np.array_equal(loose[2].labels, frames[2].labels)


def test_nearest_label_wins_and_may_serve_two_frames(tmp_path, frames):
    with BagWriter(tmp_path / "bag") as bag:
        bag.write_labels("/camera/labels", BASE + 3 * MS, frames[0].labels)
        bag.write_labels("/camera/labels", BASE + 1 * MS, frames[1].labels)
        bag.write_image("/camera/image_raw", BASE, frames[0].image)
        bag.write_image("/camera/image_raw", BASE + 2 * MS, frames[0].image)
        bag.write_image("/camera/image_raw", BASE + 2_800_000, frames[0].image)
    read = list(BagFrameSource(tmp_path / "bag", stamp_tolerance_ns=5 * MS))
    assert np.array_equal(read[0].labels, frames[1].labels)  # 1 ms away beats 3 ms
    assert np.array_equal(read[1].labels, frames[1].labels)  # a tie goes to the earlier label
    assert np.array_equal(read[2].labels, frames[0].labels)  # 0.2 ms beats 1.8 ms


def test_label_written_long_after_its_frame_is_still_attached(tmp_path, frames):
    with BagWriter(tmp_path / "bag") as bag:
        for frame in frames:
            bag.write_image("/camera/image_raw", BASE + frame.stamp_ns, frame.image)
        for frame in frames:  # same header stamps, but the bag log time comes later
            bag.write_labels("/camera/labels", BASE + frame.stamp_ns, frame.labels)
    read = list(BagFrameSource(tmp_path / "bag"))
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(read, frames, strict=True))


def test_build_message_fills_unset_fields_with_zero_values():
    store = package_typestore()
    image = build_message(store, "sensor_msgs/msg/Image", width=3)
    assert (image.width, image.height, image.encoding, image.data.size) == (3, 0, "", 0)
    assert image.header.stamp.sec == 0 and image.header.frame_id == ""
    with pytest.raises(BagError, match="no field"):
        build_message(store, "sensor_msgs/msg/Image", colour=1)


def test_no_labels_when_asked(tmp_path, frames):
    source = BagFrameSource(_write(tmp_path / "bag", frames), label_topic=None)
    assert source.label_topic is None and source.unlabelled == []
    assert all(f.labels is None for f in source)


def test_index_filter_and_pickle(tmp_path, frames):
    source = pickle.loads(pickle.dumps(BagFrameSource(_write(tmp_path / "bag", frames))))
    picked = list(source.iter_records({1, 3}))
    assert [r.index for r in picked] == [1, 3]
    assert np.array_equal(picked[1].image, frames[3].image)


def test_topic_errors(tmp_path, frames):
    path = _write(tmp_path / "bag", frames)
    with pytest.raises(BagError, match="no topic"):
        BagFrameSource(path, image_topic="/nope")
    with pytest.raises(BagError, match="no label topic"):
        BagFrameSource(path, label_topic="/nope")
    with BagWriter(tmp_path / "two") as bag:
        bag.write_image("/left/image", BASE, frames[0].image)
        bag.write_image("/right/image", BASE, frames[0].image)
        bag.write_fields("/status", "std_msgs/msg/String", BASE, data="hello")
    with pytest.raises(BagError, match="several image topics"):
        BagFrameSource(tmp_path / "two")
    assert len(BagFrameSource(tmp_path / "two", image_topic="/right/image")) == 1
    with pytest.raises(BagError, match="not an image type"):
        BagFrameSource(tmp_path / "two", image_topic="/status")


def test_not_a_bag(tmp_path):
    with pytest.raises(BagError, match="not a rosbag2"):
        BagFrameSource(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError):
        BagFrameSource(tmp_path / "empty")


@pytest.mark.parametrize("storage", STORAGES)
def test_truncated_bag_gives_bag_error(tmp_path, frames, storage):
    path = _write(tmp_path / "bag", frames, storage)
    (data_file,) = [p for p in path.iterdir() if p.suffix in (".mcap", ".db3")]
    size = data_file.stat().st_size
    with data_file.open("r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(BagError, match="bag"):
        list(BagFrameSource(path))


def test_bad_frames_are_reported_in_place(tmp_path, frames):
    with BagWriter(tmp_path / "bag") as bag:
        bag.write_image("/camera/image_raw", BASE, frames[0].image)
        bag.write_labels("/camera/labels", BASE, frames[0].labels)
        weird = build_message(bag.typestore, "sensor_msgs/msg/Image", header=bag.header(BASE + 10 * MS),
                              height=2, width=2, encoding="yuv422", step=4, data=np.zeros(8, np.uint8))
        bag.write("/camera/image_raw", "sensor_msgs/msg/Image", BASE + 10 * MS, weird)
        bag.write_image("/camera/image_raw", BASE + 20 * MS, frames[1].image)
        bag.write_labels("/camera/labels", BASE + 20 * MS, frames[1].labels[:-1])  # one row short
        bag.write_image("/camera/image_raw", BASE + 30 * MS, frames[2].image)
    source = BagFrameSource(tmp_path / "bag", stamp_tolerance_ns=MS)
    records = list(source.iter_records())
    assert len(records) == len(source) == 4
    assert [isinstance(r, FrameError) for r in records] == [False, True, True, False]
    assert "yuv422" in records[1].message
    assert "differs from image size" in records[2].message
    assert records[1].stamp_ns == BASE + 10 * MS and records[3].labels is None
    with pytest.raises(DatasetError):
        list(source)


def test_custom_messages_from_msg_folder(tmp_path):
    store = package_typestore()
    if CERTIFICATION_STATUS_TYPE not in store.types:
        pytest.skip("msg/CertificationStatus.msg not present in this checkout")
    with BagWriter(tmp_path / "bag") as bag:
        bag.write_fields("/demasked_ros/alert", CERTIFICATION_STATUS_TYPE, BASE,
                         frame_id="camera", scheme="column", certified_fraction=0.75, alert=True)
        # The Python package's name is accepted and stored under the interfaces package's name.
        bag.write_fields("/demasked_ros/class_info", "demasked_ros/msg/ClassInfo", BASE,
                         class_names=["sky", "road"], ignore_index=11,
                         colors=[bag.types["std_msgs/msg/ColorRGBA"](r=1.0, g=0.5, b=0.0, a=1.0)])
    with Reader(tmp_path / "bag") as reader:
        records = [(c.msgtype, stamp, store.deserialize_cdr(raw, c.msgtype))
                   for c, stamp, raw in reader.messages()]
    (status_type, stamp, status), (info_type, _, info) = records
    assert status_type == "demasked_ros_interfaces/msg/CertificationStatus" and stamp == BASE
    assert status.scheme == "column" and status.alert is True
    assert status.certified_fraction == pytest.approx(0.75)
    assert status.header.stamp.sec == BASE // 10**9 and status.header.frame_id == "camera"
    assert info_type == CLASS_INFO_TYPE == "demasked_ros_interfaces/msg/ClassInfo"
    assert info.class_names == ["sky", "road"] and info.colors[0].g == pytest.approx(0.5)


def test_image_cdr_is_readable_by_rclpy(tmp_path, frames):
    serialization = pytest.importorskip("rclpy.serialization")
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    with BagWriter(tmp_path / "bag") as bag:
        bag.write_labels("/camera/labels", BASE + 5, frames[0].labels)
    with Reader(tmp_path / "bag") as reader:
        (_, _, raw), = list(reader.messages())
    message = serialization.deserialize_message(bytes(raw), sensor_msgs.Image)
    assert (message.header.stamp.sec, message.header.stamp.nanosec) == (BASE // 10**9, 5)
    assert message.encoding == "mono8" and message.width == 48 and message.height == 36
    assert bytes(message.data) == frames[0].labels.tobytes()
    assert header_stamp_ns(raw) == BASE + 5


def test_writer_errors(tmp_path, frames):
    with pytest.raises(BagError, match="storage"):
        BagWriter(tmp_path / "x", "rosbag1")
    path = _write(tmp_path / "bag", frames[:1])
    with pytest.raises(BagError, match="exists"):
        _write(path, frames[:1])
    _write(path, frames[:2], overwrite=True)  # replaces a bag
    assert len(BagFrameSource(path)) == 2
    (tmp_path / "notabag").mkdir()
    with pytest.raises(BagError, match="not a rosbag2"):
        BagWriter(tmp_path / "notabag", overwrite=True).open()
    with BagWriter(tmp_path / "other") as bag:
        with pytest.raises(BagError, match="no field"):
            bag.write_fields("/s", "std_msgs/msg/String", BASE, text="x")
        with pytest.raises(BagError, match="unknown message type"):
            bag.write_fields("/s", "nope_msgs/msg/Nope", BASE)
        bag.write_image("/camera/image_raw", BASE, frames[0].image)
        with pytest.raises(BagError, match="carries"):
            bag.write_compressed("/camera/image_raw", BASE, frames[0].image)
        with pytest.raises(BagError):
            bag.write_image("/camera/bad", BASE, frames[0].labels)
        with pytest.raises(BagError, match="stamps"):
            bag.write_image("/camera/image_raw", -1, frames[0].image)


def test_writer_closes_the_bag_when_interrupted(tmp_path, frames):
    with pytest.raises(KeyboardInterrupt), BagWriter(tmp_path / "bag", "sqlite3") as bag:
        bag.write_image("/camera/image_raw", BASE, frames[0].image)
        raise KeyboardInterrupt
    assert len(list(BagFrameSource(tmp_path / "bag"))) == 1
    shutil.rmtree(tmp_path / "bag")


@pytest.mark.ros
def test_custom_message_cdr_is_readable_by_rclpy(tmp_path, ros_interfaces):
    from demasked_ros_interfaces.msg import CertificationStatus  # built by scripts/build_interfaces.sh
    from rclpy.serialization import deserialize_message

    with BagWriter(tmp_path / "bag") as bag:
        bag.write_fields("/demasked_ros/alert", CERTIFICATION_STATUS_TYPE, BASE + 7, scheme="3-mask",
                         mode=1, k=7, t=3, certified_fraction=0.5, alert=True, error_text="none")
    with Reader(tmp_path / "bag") as reader:
        (_, _, raw), = list(reader.messages())
    message = deserialize_message(bytes(raw), CertificationStatus)
    assert (message.header.stamp.sec, message.header.stamp.nanosec) == (BASE // 10**9, 7)
    assert (message.scheme, message.mode, message.k, message.t) == ("3-mask", 1, 7, 3)
    assert message.alert and message.error_text == "none"
    assert message.certified_fraction == pytest.approx(0.5)
