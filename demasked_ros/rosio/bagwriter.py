"""rosbag2 writing with ``rosbags`` (no rclpy).

:class:`BagWriter` writes raw and compressed camera images, label images and any message type of the
typestore (:mod:`.typestore`: ROS 2 Kilted plus ``demasked_ros_interfaces``:
:data:`CERTIFICATION_STATUS_TYPE`, :data:`CLASS_INFO_TYPE`), in mcap or sqlite3 storage, with the
stamps it is given: the header stamp and the bag's log time are the same, so replays keep the
original timing. :mod:`demasked_ros.rosio.bagio` holds the reader and re-exports this.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np
from rosbags.rosbag2 import Writer

from demasked_ros.core.classes import ClassInfo
from demasked_ros.rosio.image_codec import ImageCodecError, encode_mono8, encode_mono16, encode_rgb8
from demasked_ros.rosio.messages import EncodedImage
from demasked_ros.rosio.typestore import (
    CERTIFICATION_STATUS_TYPE,
    CLASS_INFO_KEY,
    CLASS_INFO_TYPE,
    COMPRESSED_FORMATS,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    IMAGE_TYPES,
    STORAGES,
    BagError,
    build_message,
    class_info_from_json,
    class_info_to_json,
    header_stamp_ns,
    package_typestore,
    resolve_type,
)

__all__ = ["CERTIFICATION_STATUS_TYPE", "CLASS_INFO_KEY", "CLASS_INFO_TYPE", "COMPRESSED_TYPE", "IMAGE_TYPE",
           "IMAGE_TYPES", "STORAGES", "BagError", "BagWriter", "build_message", "class_info_from_json",
           "class_info_to_json", "header_stamp_ns", "package_typestore"]


class BagWriter:
    """Context manager writing a rosbag2 (``with BagWriter(path, "mcap") as bag: bag.write_image(...)``).

    The bag is always closed on exit, also after an exception or Ctrl-C, so what was written stays a
    readable bag with its metadata. Topics are created on first use with the message type of the
    first write. ``class_info`` is recorded in the bag metadata so :class:`~.bagio.BagFrameSource`
    knows the label set.

    Args:
        path: bag directory to create (must not exist unless ``overwrite``).
        storage: ``"mcap"`` (default; Foxglove, ros2 bag) or ``"sqlite3"``.
        class_info: label set of any label topics.
        overwrite: replace an existing bag directory (refused for a directory that is not a bag).
        msg_dir: where this package's ``.msg`` files are (default: see :func:`package_typestore`).

    Raises:
        BagError: unknown storage, existing target, unwritable location.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", *, class_info: ClassInfo | None = None,
                 overwrite: bool = False, msg_dir: str | Path | None = None) -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown bag storage {storage!r}; expected one of {sorted(STORAGES)}")
        self.path = Path(path)
        self.storage = storage
        self.class_info = class_info
        self.overwrite = overwrite
        self.typestore = package_typestore(msg_dir)
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        """Messages written per topic."""

    def __enter__(self) -> BagWriter:
        self.open()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        """Create the bag directory and storage file."""
        if self.path.exists():
            if not self.overwrite:
                raise BagError(f"{self.path} exists already (use overwrite / --overwrite to replace it)")
            if not (self.path.is_dir() and (self.path / "metadata.yaml").is_file()):
                raise BagError(f"{self.path} exists and is not a rosbag2 directory; not replacing it")
            shutil.rmtree(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer = Writer(self.path, version=9, storage_plugin=STORAGES[self.storage])
            if self.class_info is not None:
                writer.set_custom_data(CLASS_INFO_KEY, class_info_to_json(self.class_info))
            writer.open()
        except Exception as error:  # WriterError, OSError
            raise BagError(f"{self.path}: cannot create the bag ({error})") from error
        self._writer = writer

    def close(self) -> None:
        """Write the metadata and close; safe to call twice."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception as error:
                raise BagError(f"{self.path}: cannot finish the bag ({error})") from error

    @property
    def types(self) -> dict[str, Any]:
        """Message classes by type name (``bag.types["std_msgs/msg/ColorRGBA"](r=..., ...)``)."""
        return dict(self.typestore.types)

    def header(self, stamp_ns: int, frame_id: str = "") -> Any:
        """A ``std_msgs/Header`` for ``stamp_ns`` (nanoseconds, >= 0)."""
        if stamp_ns < 0:
            raise BagError(f"stamps must be >= 0 ns, got {stamp_ns}")
        seconds, nanoseconds = divmod(int(stamp_ns), 1_000_000_000)
        stamp = build_message(self.typestore, "builtin_interfaces/msg/Time", sec=seconds, nanosec=nanoseconds)
        return build_message(self.typestore, "std_msgs/msg/Header", stamp=stamp, frame_id=frame_id)

    def write(self, topic: str, msgtype: str, stamp_ns: int, message: Any) -> None:
        """Serialise ``message`` (a ``msgtype`` instance) on ``topic`` with log time ``stamp_ns``."""
        if self._writer is None:
            raise BagError(f"{self.path}: the bag is not open (use it as a context manager)")
        msgtype = resolve_type(msgtype)
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise BagError(f"topic {topic!r} carries {connection.msgtype}, cannot write {msgtype}")
        data = self.typestore.serialize_cdr(message, msgtype)
        self._writer.write(connection, int(stamp_ns), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write_fields(self, topic: str, msgtype: str, stamp_ns: int, frame_id: str = "",
                     **fields: Any) -> None:
        """Write a ``msgtype`` built from ``fields`` (others zero); a ``header`` gets ``stamp_ns``.

        E.g. ``bag.write_fields("/demasked_ros/alert", CERTIFICATION_STATUS_TYPE,
        stamp, scheme="column", certified_fraction=0.93, alert=True)``.
        """
        msgtype = resolve_type(msgtype)
        _, descs = self.typestore.fielddefs.get(msgtype, ((), ()))
        if "header" not in fields and any(name == "header" for name, _ in descs):
            fields["header"] = self.header(stamp_ns, frame_id)
        self.write(topic, msgtype, stamp_ns, build_message(self.typestore, msgtype, **fields))

    def write_encoded(self, topic: str, stamp_ns: int, image: EncodedImage, frame_id: str = "camera") -> None:
        """Write an already encoded image (see :mod:`demasked_ros.rosio.messages`)."""
        data = np.frombuffer(image.data, dtype=np.uint8)
        message = build_message(self.typestore, IMAGE_TYPE, header=self.header(stamp_ns, frame_id),
                                height=image.height, width=image.width, encoding=image.encoding,
                                is_bigendian=0, step=image.step, data=data)
        self.write(topic, IMAGE_TYPE, stamp_ns, message)

    def write_image(self, topic: str, stamp_ns: int, rgb: np.ndarray, frame_id: str = "camera") -> None:
        """Write an H x W x 3 uint8 RGB array as an rgb8 ``sensor_msgs/Image``."""
        try:
            encoded = encode_rgb8(rgb)
        except ImageCodecError as error:
            raise BagError(f"{topic}: {error}") from error
        self.write_encoded(topic, stamp_ns, EncodedImage(*encoded, *rgb.shape[:2]), frame_id)

    def write_labels(self, topic: str, stamp_ns: int, labels: np.ndarray, frame_id: str = "camera") -> None:
        """Write H x W class ids as mono8 (uint8 or values < 256) or mono16 ``sensor_msgs/Image``."""
        labels = np.asarray(labels)
        try:
            wide = labels.dtype == np.uint16 or (labels.size > 0 and int(labels.max()) > 255)
            encoded = encode_mono16(labels) if wide else encode_mono8(labels)
        except (ImageCodecError, ValueError, TypeError) as error:
            raise BagError(f"{topic}: {error}") from error
        self.write_encoded(topic, stamp_ns, EncodedImage(*encoded, *labels.shape[:2]), frame_id)

    def write_compressed(self, topic: str, stamp_ns: int, rgb: np.ndarray, fmt: str = "jpeg",
                         quality: int = 90, frame_id: str = "camera") -> None:
        """Write an RGB array as a ``sensor_msgs/CompressedImage`` (``fmt`` "jpeg" or lossless "png")."""
        if fmt not in COMPRESSED_FORMATS:
            raise BagError(f"unknown compressed format {fmt!r}; expected one of {COMPRESSED_FORMATS}")
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
            raise BagError(f"{topic}: need a non-empty H x W x 3 uint8 array, got {rgb.dtype} {rgb.shape}")
        if fmt == "jpeg":
            params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        else:
            params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
        ok, buffer = cv2.imencode(f".{'jpg' if fmt == 'jpeg' else 'png'}", rgb[:, :, ::-1], params)
        if not ok:
            raise BagError(f"{topic}: OpenCV could not encode the image as {fmt}")
        message = build_message(self.typestore, COMPRESSED_TYPE, header=self.header(stamp_ns, frame_id),
                                format=fmt, data=np.asarray(buffer, dtype=np.uint8).reshape(-1))
        self.write(topic, COMPRESSED_TYPE, stamp_ns, message)
