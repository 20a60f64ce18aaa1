"""The node's ROS entities and messages: what is published on which topic, as rclpy messages.

Owns publisher and subscription creation (names and QoS from :mod:`demasked_ros.rosio.topics`),
the in-flight :class:`Frame` record, and turning :mod:`demasked_ros.rosio.messages` output (plain
data, shared with the evaluator's output bag) into rclpy ``Image`` / ``CertificationStatus`` /
``ClassInfo`` messages. The node (:mod:`.node`) owns the lifecycle, the frame path and fail-closed
decisions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from demasked_ros_interfaces.msg import CertificationStatus, ClassInfo
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header

from demasked_ros.apps.node.models import LoadedModels
from demasked_ros.apps.node.params import NodeConfig
from demasked_ros.rosio import topics
from demasked_ros.rosio.messages import EncodedImage, OutputMessages


@dataclass
class Frame:
    """A received message and when it arrived (monotonic seconds)."""

    msg: Any
    received: float
    received_ns: int = 0
    closed: bool = False
    size: tuple[int, int] | None = None
    started: float = field(default=0.0)
    certify_started: float = field(default=0.0)
    certify_ended: float = field(default=0.0)
    cancel: threading.Event = field(default_factory=threading.Event)


def create_publishers(node: Any, config: NodeConfig) -> dict[str, Any]:
    """The node's publishers by short name: per-frame results, class info, diagnostics."""
    publishers: dict[str, Any] = {}
    output_qos = topics.output_qos(config.output_qos, config.output_qos_depth)
    for name in topics.RESULT_TOPICS:
        if name != "overlay" or config.publish_overlay:
            kind = CertificationStatus if name == "alert" else Image
            publishers[name] = node.create_publisher(kind, f"~/{name}", output_qos)
    publishers["class_info"] = node.create_publisher(ClassInfo, f"~/{topics.CLASS_INFO_TOPIC}",
                                                     topics.latched_qos())
    publishers["diagnostics"] = node.create_publisher(DiagnosticArray, topics.DIAGNOSTICS_TOPIC, 10)
    return publishers


def create_input(node: Any, config: NodeConfig, callback: Callable[[Any], None]) -> Any:
    """The camera subscription of ``config.input_transport`` with the configured QoS.

    Compressed input follows image_transport: ``<image>/compressed`` where ``<image>`` is the raw
    topic *after remapping*, so ``-r image:=/cam/image`` subscribes to ``/cam/image/compressed``.
    """
    qos = topics.input_qos(config.input_qos, config.input_qos_depth)
    if config.input_transport == "compressed":
        base = node.resolve_topic_name(topics.input_topic("raw"))
        return node.create_subscription(CompressedImage, f"{base.rstrip('/')}/compressed", callback, qos)
    return node.create_subscription(Image, topics.input_topic(config.input_transport), callback, qos)


def class_info_message(models: LoadedModels, stamp: Any) -> ClassInfo:
    """``~/class_info``: the segmenter's class names, colours, ignore index and model."""
    info = ClassInfo()
    info.header.stamp = stamp
    info.class_names = list(models.class_info.names)
    info.colors = [ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=1.0)
                   for r, g, b in models.class_info.colors]
    info.ignore_index = models.ignore_index
    info.model = models.model_name
    return info


def status_message(header: Header, messages: OutputMessages, received: float) -> CertificationStatus:
    """``~/alert`` from the shared status fields; latency measured from ``received`` until now."""
    fields = dict(messages.status)
    regions = fields.pop("alert_regions")
    x, y, height, width = fields.pop("suspected_patch")
    status = CertificationStatus(header=header, **fields)
    status.suspected_patch = RegionOfInterest(x_offset=x, y_offset=y, height=height, width=width)
    status.alert_regions = [RegionOfInterest(x_offset=x, y_offset=y, height=h, width=w)
                            for x, y, h, w in regions]
    status.latency_ms = (time.monotonic() - received) * 1000.0
    return status


def publish_image(publishers: dict[str, Any], topic: str, header: Header, image: EncodedImage) -> None:
    """Publish an encoded image on ``topic`` with ``header``."""
    msg = Image(header=header, height=image.height, width=image.width, encoding=image.encoding,
                is_bigendian=0, step=image.step)
    msg.data = image.data
    publishers[topic].publish(msg)


def copy_header(header: Header) -> Header:
    """A copy of an input header (outputs carry the stamp and frame of the frame they came from)."""
    copy = Header()
    copy.stamp.sec, copy.stamp.nanosec = header.stamp.sec, header.stamp.nanosec
    copy.frame_id = header.frame_id
    return copy
