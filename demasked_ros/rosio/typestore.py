"""The rosbags typestore of this package: ROS 2 Kilted plus ``demasked_ros_interfaces``, and the
helpers every bag reader and writer shares (type names, zero-filled messages, header stamps, label
set metadata, :class:`BagError`).

Owned here, below the apps, so the evaluator's bags and the node demo's recorder use one store.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rosbags.rosbag2 import StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

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
    repo_msg = Path(__file__).resolve().parents[2] / "msg"
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
