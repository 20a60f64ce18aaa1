"""rosbag2 writing with ``rosbags`` (no rclpy), plus what bag reading and writing share.

:class:`BagWriter` writes raw and compressed camera images, label images and any message type of the
ROS 2 Kilted typestore or of the repository's ``msg/`` folder (built as the ROS package
``demasked_ros_interfaces``: :data:`CERTIFICATION_STATUS_TYPE`, :data:`CLASS_INFO_TYPE`), in mcap or
sqlite3 storage, with the stamps it is given: the header stamp and the bag's log time are the same,
so replays keep the original timing. Import it from
:mod:`demasked_ros.apps.evaluate.bagio`, which also holds the reader.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from demasked_ros.apps.image_codec import ImageCodecError, encode_mono8, encode_mono16, encode_rgb8
from demasked_ros.core.classes import ClassInfo
from demasked_ros.datasets.base import DatasetError

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
CLASS_INFO_KEY = "demasked_ros.class_info"
"""Bag metadata ``custom_data`` key under which writers record the label set (JSON)."""

ROS_PACKAGE = "demasked_ros"
INTERFACES_PACKAGE = "demasked_ros_interfaces"
"""ROS package of the custom messages in ``msg/`` (what rclpy, ``ros2 bag`` and Foxglove know them as)."""
CERTIFICATION_STATUS_TYPE = f"{INTERFACES_PACKAGE}/msg/CertificationStatus"
CLASS_INFO_TYPE = f"{INTERFACES_PACKAGE}/msg/ClassInfo"
_LEGACY_PREFIX = f"{ROS_PACKAGE}/msg/"


class BagError(DatasetError):
    """A bag cannot be used: missing/ambiguous topic, corrupt or unreadable storage, bad frame data.

    Subclasses :class:`~demasked_ros.datasets.base.DatasetError` so callers handling frame sources
    catch both with one ``except``.
    """


def message_directories() -> list[Path]:
    """Where this package's ``.msg`` files may be: the repository's ``msg/``, then the install share."""
    repo_msg = Path(__file__).resolve().parents[3] / "msg"
    installed = Path(sys.prefix) / "share" / ROS_PACKAGE / "msg"
    built = Path(sys.prefix) / "share" / INTERFACES_PACKAGE / "msg"
    return [repo_msg, installed, built]


def package_typestore(msg_dir: str | Path | None = None) -> Typestore:
    """The ROS 2 Kilted typestore plus ``demasked_ros_interfaces/msg/<Name>`` for every ``<Name>.msg``.

    ``msg_dir=None`` looks in :func:`message_directories` (first one holding ``.msg`` files). Without
    any definition the store still has every standard type (Image, CompressedImage, ...).

    Raises:
        BagError: a ``.msg`` file does not parse or clashes with an already registered type.
    """
    store = get_typestore(Stores.ROS2_KILTED)
    folders = [Path(msg_dir)] if msg_dir is not None else message_directories()
    for folder in folders:
        files = sorted(folder.glob("*.msg")) if folder.is_dir() else []
        if not files:
            continue
        definitions: dict[str, Any] = {}
        for path in files:
            try:
                name = f"{INTERFACES_PACKAGE}/msg/{path.stem}"
                definitions.update(get_types_from_msg(path.read_text(), name))
            except Exception as error:  # rosbags raises several parser error types
                raise BagError(f"{path}: cannot parse message definition ({error})") from error
        try:
            store.register(definitions)
        except Exception as error:
            raise BagError(f"{folder}: cannot register message definitions ({error})") from error
        break
    return store


def header_stamp_ns(cdr: bytes | memoryview) -> int:
    """Header stamp (ns) of a CDR message whose first field is ``std_msgs/Header``, without decoding it.

    Reads ``stamp.sec`` (int32) and ``stamp.nanosec`` (uint32) after the 4-byte encapsulation header,
    so indexing a bag of large images costs no pixel copies.

    Raises:
        BagError: too short or an encapsulation other than plain CDR.
    """
    raw = bytes(cdr[:12])
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        raise BagError(f"message is not plain CDR (encapsulation {raw[:4].hex()})")
    sec, nanosec = struct.unpack("<iI" if raw[1] == 1 else ">iI", raw[4:12])
    return sec * 1_000_000_000 + nanosec


def class_info_to_json(info: ClassInfo) -> str:
    """Serialise a label set for the bag metadata (see :data:`CLASS_INFO_KEY`)."""
    return json.dumps({"names": list(info.names), "colors": [list(c) for c in info.colors],
                       "ignore_index": info.ignore_index})


def class_info_from_json(text: str) -> ClassInfo:
    """Inverse of :func:`class_info_to_json`; raises BagError on malformed text."""
    try:
        data = json.loads(text)
        return ClassInfo(names=tuple(str(n) for n in data["names"]),
                         colors=tuple((int(c[0]), int(c[1]), int(c[2])) for c in data["colors"]),
                         ignore_index=int(data["ignore_index"]))
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise BagError(f"bad class info in bag metadata: {error}") from error


Storage = Literal["mcap", "sqlite3"]
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
COMPRESSED_FORMATS = ("jpeg", "png")

_NUMPY_TYPES = {"bool": "bool_", "char": "uint8", "byte": "uint8"}
_FLOATS = {"float32", "float64", "float128"}
_STRINGS = {"string", "wstring"}


def default_value(store: Typestore, desc: tuple[Any, Any]) -> Any:
    """The zero value rosbags expects for a field description (numbers 0, "", empty sequences)."""
    kind, detail = desc
    if kind == 1:  # Nodetype.BASE
        name = detail[0]
        return "" if name in _STRINGS else False if name == "bool" else 0.0 if name in _FLOATS else 0
    if kind == 2:  # Nodetype.NAME
        return build_message(store, detail)
    element, count = detail
    numeric = element[0] == 1 and element[1][0] not in _STRINGS
    if kind == 3:  # Nodetype.ARRAY (fixed size)
        if numeric:
            return np.zeros(count, dtype=_NUMPY_TYPES.get(element[1][0], element[1][0]))
        return [default_value(store, element) for _ in range(count)]
    if numeric:  # Nodetype.SEQUENCE
        return np.zeros(0, dtype=_NUMPY_TYPES.get(element[1][0], element[1][0]))
    return []


def resolve_type(msgtype: str) -> str:
    """The bag type name: ``demasked_ros/msg/X`` (the Python package's name) means the interfaces'
    ``demasked_ros_interfaces/msg/X``, the name rclpy and Foxglove know."""
    if msgtype.startswith(_LEGACY_PREFIX):
        return INTERFACES_PACKAGE + "/msg/" + msgtype[len(_LEGACY_PREFIX):]
    return msgtype


def build_message(store: Typestore, msgtype: str, **fields: Any) -> Any:
    """A ``msgtype`` instance with ``fields`` set and every other field at its zero value.

    Raises:
        BagError: unknown type or a field the type does not have.
    """
    msgtype = resolve_type(msgtype)
    if msgtype not in store.types:
        raise BagError(f"unknown message type {msgtype!r} (not in the Kilted store or msg/)")
    _, field_descs = store.fielddefs[msgtype]
    names = {name for name, _ in field_descs}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise BagError(f"{msgtype} has no field(s) {unknown}; fields: {sorted(names)}")
    values = {name: fields[name] if name in fields else default_value(store, desc)
              for name, desc in field_descs}
    return store.types[msgtype](**values)


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

    def _image(self, stamp_ns: int, frame_id: str, array: np.ndarray,
               encoded: tuple[str, int, bytes]) -> Any:
        encoding, step, data = encoded
        return build_message(self.typestore, IMAGE_TYPE, header=self.header(stamp_ns, frame_id),
                             height=int(array.shape[0]), width=int(array.shape[1]), encoding=encoding,
                             is_bigendian=0, step=step, data=np.frombuffer(data, dtype=np.uint8))

    def write_image(self, topic: str, stamp_ns: int, rgb: np.ndarray, frame_id: str = "camera") -> None:
        """Write an H x W x 3 uint8 RGB array as an rgb8 ``sensor_msgs/Image``."""
        try:
            encoded = encode_rgb8(rgb)
        except ImageCodecError as error:
            raise BagError(f"{topic}: {error}") from error
        self.write(topic, IMAGE_TYPE, stamp_ns, self._image(stamp_ns, frame_id, rgb, encoded))

    def write_labels(self, topic: str, stamp_ns: int, labels: np.ndarray, frame_id: str = "camera") -> None:
        """Write H x W class ids as mono8 (uint8 or values < 256) or mono16 ``sensor_msgs/Image``."""
        labels = np.asarray(labels)
        try:
            wide = labels.dtype == np.uint16 or (labels.size > 0 and int(labels.max()) > 255)
            encoded = encode_mono16(labels) if wide else encode_mono8(labels)
        except (ImageCodecError, ValueError, TypeError) as error:
            raise BagError(f"{topic}: {error}") from error
        self.write(topic, IMAGE_TYPE, stamp_ns, self._image(stamp_ns, frame_id, labels, encoded))

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
