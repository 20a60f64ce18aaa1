"""rosbag2 input and output with ``rosbags`` only (no rclpy): mcap and sqlite3 storage.

- :class:`BagFrameSource` reads camera frames (``sensor_msgs/Image`` or ``CompressedImage``) and
  optional ground-truth labels (mono8 / mono16 ``Image``) as a
  :class:`~demasked_ros.datasets.base.FrameSource`; labels are matched to frames by header stamp.
- :class:`BagWriter` (defined in :mod:`.bagwriter`, re-exported here with :class:`BagError`) writes
  images, compressed images, labels and any registered message type (including this package's
  ``demasked_ros_interfaces/msg/*`` from the repository's ``msg/`` folder) with given stamps, in a form rclpy
  (Kilted), ``ros2 bag`` and Foxglove read.

Message definitions come from the ROS 2 Kilted typestore of ``rosbags`` (the distribution of the
ROS wheels this project runs on), so the CDR bytes match what rclpy publishes.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from demasked_ros.core.classes import ClassInfo
from demasked_ros.datasets.base import Frame, FrameError, FrameRecord, SourceBase
from demasked_ros.rosio.bagwriter import (
    CERTIFICATION_STATUS_TYPE,
    CLASS_INFO_KEY,
    CLASS_INFO_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    IMAGE_TYPES,
    STORAGES,
    BagError,
    BagWriter,
    build_message,
    class_info_from_json,
    class_info_to_json,
    header_stamp_ns,
    package_typestore,
)
from demasked_ros.rosio.image_codec import (
    ImageCodecError,
    decode_compressed,
    decode_labels,
    decode_raw,
)

__all__ = [
    "AUTO",
    "CERTIFICATION_STATUS_TYPE",
    "CLASS_INFO_KEY",
    "CLASS_INFO_TYPE",
    "COMPRESSED_TYPE",
    "DEFAULT_STAMP_TOLERANCE_NS",
    "IMAGE_TYPE",
    "IMAGE_TYPES",
    "STORAGES",
    "BagError",
    "BagFrameSource",
    "BagWriter",
    "build_message",
    "class_info_from_json",
    "class_info_to_json",
    "header_stamp_ns",
    "package_typestore",
]

AUTO = "auto"
"""``label_topic=AUTO``: use the one Image topic whose name contains "label", if there is exactly one."""

DEFAULT_STAMP_TOLERANCE_NS = 5_000_000
"""A label belongs to a frame when their header stamps differ by at most this (5 ms)."""

@dataclass(frozen=True)
class _Indexed:
    """One image message found while indexing: order in the bag, header stamp, matched label."""

    index: int
    stamp_ns: int
    label: int | None  # ordinal of the matched label message, None = no label within tolerance


def _corrupt(path: Path, error: Exception) -> BagError:
    return BagError(f"{path}: corrupt or unreadable bag ({type(error).__name__}: {error})")


def _open_reader(path: Path) -> Reader:
    try:
        reader = Reader(path)
        reader.open()
    except FileNotFoundError as error:
        raise BagError(f"{path}: not a rosbag2 (no metadata.yaml / storage file): {error}") from error
    except Exception as error:  # ReaderError, sqlite3/mcap decoding errors, yaml errors ...
        raise BagError(f"{path}: cannot open the bag ({type(error).__name__}: {error})") from error
    return reader


class BagFrameSource(SourceBase):
    """Frames (and optional labels) from a rosbag2 as a :class:`~demasked_ros.datasets.base.FrameSource`.

    The constructor indexes the bag (topic detection, header stamps, label matching) so that errors
    about the bag as a whole come first and ``len()`` is known; frames are decoded while iterating.
    ``iter_records`` yields a :class:`~demasked_ros.datasets.base.FrameError` for a frame whose image
    (or matched label) cannot be decoded, has an unknown encoding, or whose label size differs from
    the image; a frame with no label within the tolerance is yielded with ``labels=None`` and listed
    in :attr:`unlabelled`.

    Args:
        path: bag directory (with metadata.yaml) or a single ``.mcap`` / ``.db3`` file.
        image_topic: camera topic; ``None`` picks the only Image/CompressedImage topic whose name does
            not contain "label" (and is not ``label_topic``).
        label_topic: ground-truth topic (mono8/mono16 Image); :data:`AUTO` picks the only Image topic
            whose name contains "label" (none found = no labels); ``None`` reads no labels.
        stamp_tolerance_ns: largest header-stamp difference between a frame and its label.
        class_info: label set; ``None`` reads it from the bag metadata when a writer recorded it.
        max_pixels: reject larger images (a guard against corrupt sizes).

    Raises:
        BagError: unreadable/corrupt bag, missing or ambiguous topic, wrong message type.
    """

    def __init__(self, path: str | Path, image_topic: str | None = None, label_topic: str | None = AUTO,
                 stamp_tolerance_ns: int = DEFAULT_STAMP_TOLERANCE_NS, *,
                 class_info: ClassInfo | None = None, max_pixels: int | None = 50_000_000) -> None:
        self.path = Path(path)
        if stamp_tolerance_ns < 0:
            raise BagError(f"stamp tolerance must be >= 0 ns, got {stamp_tolerance_ns}")
        self.stamp_tolerance_ns = int(stamp_tolerance_ns)
        self.max_pixels = max_pixels
        reader = _open_reader(self.path)
        try:
            topics = {name: info.msgtype for name, info in reader.topics.items()}
            explicit_label = label_topic if label_topic not in (None, AUTO) else None
            self.image_topic = self._pick_image_topic(topics, image_topic, explicit_label)
            self.image_type = str(topics[self.image_topic])
            self.label_topic = self._pick_label_topic(topics, label_topic)
            self._class_info = class_info if class_info is not None else self._recorded_class_info(reader)
            self._frames = self._index(reader)
        finally:
            reader.close()
        self.unlabelled: list[int] = (
            [f.index for f in self._frames if f.label is None] if self.label_topic else []
        )
        """Indices of frames without a label within the tolerance (empty when reading no labels)."""

    def _pick_image_topic(self, topics: dict[str, str | None], wanted: str | None,
                          label_topic: str | None) -> str:
        if wanted is not None:
            if wanted not in topics:
                raise BagError(f"{self.path}: no topic {wanted!r}; topics: {sorted(topics)}")
            if topics[wanted] not in IMAGE_TYPES:
                raise BagError(f"{self.path}: topic {wanted!r} is {topics[wanted]}, not an image type")
            return wanted
        candidates = sorted(t for t, m in topics.items()
                            if m in IMAGE_TYPES and "label" not in t.lower() and t != label_topic)
        if len(candidates) != 1:
            found = "no image topic" if not candidates else f"several image topics {candidates}"
            raise BagError(f"{self.path}: {found}; choose one with image_topic (--image-topic). "
                           f"Topics: { {t: m for t, m in sorted(topics.items())} }")
        return candidates[0]

    def _pick_label_topic(self, topics: dict[str, str | None], wanted: str | None) -> str | None:
        if wanted is None:
            return None
        if wanted == AUTO:
            candidates = sorted(t for t, m in topics.items()
                                if m == IMAGE_TYPE and "label" in t.lower() and t != self.image_topic)
            if len(candidates) > 1:
                raise BagError(f"{self.path}: several label topics {candidates}; choose one with label_topic")
            return candidates[0] if candidates else None
        if wanted not in topics:
            raise BagError(f"{self.path}: no label topic {wanted!r}; topics: {sorted(topics)}")
        if topics[wanted] != IMAGE_TYPE:
            raise BagError(f"{self.path}: label topic {wanted!r} is {topics[wanted]}, not {IMAGE_TYPE}")
        if wanted == self.image_topic:
            raise BagError(f"{self.path}: the label topic is the image topic ({wanted!r})")
        return wanted

    def _recorded_class_info(self, reader: Reader) -> ClassInfo | None:
        metadata = getattr(reader.storage, "metadata", None)
        custom = getattr(metadata, "custom", None) or {}
        text = custom.get(CLASS_INFO_KEY)
        return class_info_from_json(text) if text else None

    def _index(self, reader: Reader) -> list[_Indexed]:
        wanted = {self.image_topic} | ({self.label_topic} if self.label_topic else set())
        connections = [c for c in reader.connections if c.topic in wanted]
        image_stamps: list[int] = []
        label_stamps: list[tuple[int, int]] = []
        try:
            for connection, _, raw in reader.messages(connections=connections):
                stamp = header_stamp_ns(raw)
                if connection.topic == self.image_topic:
                    image_stamps.append(stamp)
                else:
                    label_stamps.append((stamp, len(label_stamps)))
        except BagError as error:
            raise BagError(f"{self.path}: {error}") from error
        except Exception as error:
            raise _corrupt(self.path, error) from error
        label_stamps.sort()
        keys = [stamp for stamp, _ in label_stamps]
        frames = []
        for index, stamp in enumerate(image_stamps):
            frames.append(_Indexed(index, stamp, self._nearest_label(keys, label_stamps, stamp)))
        return frames

    def _nearest_label(self, keys: list[int], labels: list[tuple[int, int]], stamp: int) -> int | None:
        position = bisect.bisect_left(keys, stamp)
        best: tuple[int, int] | None = None
        for candidate in (position - 1, position):
            if 0 <= candidate < len(keys):
                distance = abs(keys[candidate] - stamp)
                if distance <= self.stamp_tolerance_ns and (best is None or distance < best[0]):
                    best = (distance, labels[candidate][1])
        return None if best is None else best[1]

    @property
    def class_info(self) -> ClassInfo | None:
        """Label set given to the constructor or recorded in the bag metadata; None if unknown."""
        return self._class_info

    @property
    def stamps_ns(self) -> list[int]:
        """Header stamps of all frames, in bag order."""
        return [f.stamp_ns for f in self._frames]

    def __repr__(self) -> str:
        return (f"BagFrameSource({str(self.path)!r}, image_topic={self.image_topic!r}, "
                f"label_topic={self.label_topic!r}, frames={len(self)})")

    def iter_records(self, indices: Container[int] | None = None) -> Iterator[FrameRecord]:
        """Yield a Frame or FrameError per image message, in bag order (labels attached by stamp).

        Raises:
            BagError: the storage fails mid-way (frames already yielded stay valid).
        """
        selected = [f for f in self._frames if indices is None or f.index in indices]
        uses = Counter(f.label for f in selected if f.label is not None)  # a label may serve two frames
        by_index = {f.index: f for f in selected}
        store = get_typestore(Stores.ROS2_KILTED)
        pending: deque[tuple[_Indexed, bytes]] = deque()
        labels: dict[int, bytes] = {}
        wanted = {self.image_topic} | ({self.label_topic} if self.label_topic else set())
        reader = _open_reader(self.path)
        try:
            image_count = label_count = 0
            for connection, _, raw in reader.messages([c for c in reader.connections if c.topic in wanted]):
                if connection.topic == self.image_topic:
                    if image_count in by_index:
                        pending.append((by_index[image_count], bytes(raw)))
                    image_count += 1
                else:
                    if label_count in uses:
                        labels[label_count] = bytes(raw)
                    label_count += 1
                while pending and (pending[0][0].label is None or pending[0][0].label in labels):
                    entry, image_raw = pending.popleft()
                    label_raw = None
                    if entry.label is not None:
                        label_raw = labels[entry.label]
                        uses[entry.label] -= 1
                        if not uses[entry.label]:
                            del labels[entry.label]
                    yield self._decode(store, entry, image_raw, label_raw)
        except BagError:
            raise
        except Exception as error:
            raise _corrupt(self.path, error) from error
        finally:
            reader.close()
        for entry, _ in pending:  # the bag changed since indexing: report, never drop
            yield FrameError(entry.index, entry.stamp_ns, self._name(entry), str(self.path),
                             "matched label message missing on re-read (bag modified?)")

    def _name(self, entry: _Indexed) -> str:
        return f"{self.image_topic}@{entry.stamp_ns}"

    def _decode(self, store: Typestore, entry: _Indexed, image_raw: bytes,
                label_raw: bytes | None) -> FrameRecord:
        try:
            message: Any = store.deserialize_cdr(image_raw, self.image_type)
            if self.image_type == COMPRESSED_TYPE:
                image = decode_compressed(message.format, message.data, self.max_pixels)
            else:
                image = decode_raw(message.encoding, message.height, message.width, message.step,
                                   message.data, self.max_pixels)
            labels = None
            if label_raw is not None:
                label_message: Any = store.deserialize_cdr(label_raw, IMAGE_TYPE)
                labels = decode_labels(label_message.encoding, label_message.height, label_message.width,
                                       label_message.step, label_message.data,
                                       bool(label_message.is_bigendian))
                if labels.shape != image.shape[:2]:
                    raise BagError(f"label size {labels.shape[1]}x{labels.shape[0]} differs from image size "
                                   f"{image.shape[1]}x{image.shape[0]} (W x H)")
        except (ImageCodecError, BagError) as error:
            return FrameError(entry.index, entry.stamp_ns, self._name(entry), str(self.path), str(error))
        except Exception as error:  # CDR deserialisation errors of a damaged message
            return FrameError(entry.index, entry.stamp_ns, self._name(entry), str(self.path),
                              f"cannot deserialise message ({type(error).__name__}: {error})")
        return Frame(entry.index, entry.stamp_ns, image, labels, self._name(entry), str(self.path))
