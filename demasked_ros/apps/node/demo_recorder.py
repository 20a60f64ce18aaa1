"""Record serialized ROS messages straight into a rosbag2 (mcap) with rosbags, without decoding them.

rclpy's ``raw=True`` subscriptions deliver the CDR bytes rosbag2 itself stores, so recording costs
no (de)serialisation; the message definitions come from :mod:`demasked_ros.rosio.typestore` (ROS 2
Kilted plus this package's interfaces), so Foxglove and ``ros2 bag`` can read the bag. Topic names
come from :mod:`demasked_ros.rosio.topics`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer

from demasked_ros.rosio import topics
from demasked_ros.rosio.typestore import package_typestore


def topic_types() -> dict[str, Any]:
    """Topics the demo records and their rclpy message classes."""
    from demasked_ros_interfaces.msg import CertificationStatus, ClassInfo
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    kinds: dict[str, Any] = {"/" + topics.input_topic("raw"): Image}
    for name in topics.RESULT_TOPICS:
        kinds[topics.node_topic(name)] = CertificationStatus if name == "alert" else Image
    kinds[topics.node_topic(topics.CLASS_INFO_TOPIC)] = ClassInfo
    kinds[topics.DIAGNOSTICS_TOPIC] = DiagnosticArray
    return kinds


def _type_name(kind: Any) -> str:
    module = kind.__module__.split(".")[0]
    return f"{module}/msg/{kind.__name__}"


class RawRecorder:
    """Context manager: ``callback(topic)`` gives a raw-subscription callback writing to the bag."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.counts: dict[str, int] = {}
        self._types = {topic: _type_name(kind) for topic, kind in topic_types().items()}
        self._store = package_typestore()
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RawRecorder:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        self._writer = writer
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def callback(self, topic: str) -> Callable[[bytes], None]:
        """A callback for ``create_subscription(..., raw=True)`` on ``topic``."""
        def record(data: bytes) -> None:
            with self._lock:
                if self._writer is None:
                    return
                connection = self._connections.get(topic)
                if connection is None:
                    connection = self._writer.add_connection(topic, self._types[topic], typestore=self._store)
                    self._connections[topic] = connection
                self._writer.write(connection, time.time_ns(), bytes(data))
                self.counts[topic] = self.counts.get(topic, 0) + 1
        return record
