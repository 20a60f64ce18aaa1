"""The node's topics and QoS: one table the node, the demo recorder and the evaluator's bags share.

Names are relative to the node (``~/labels`` resolves to ``/<node>/labels``); :func:`node_topic`
gives the absolute name recorded in bags. QoS profiles need rclpy and are built on demand, so this
module imports without ROS.
"""

from __future__ import annotations

from typing import Any

#: Default node name (so the default absolute topics are ``/demasked_ros/<name>``).
NODE_NAME = "demasked_ros"
#: Input topic per ``input_transport``.
INPUT_TOPICS = {"raw": "image", "compressed": "image/compressed"}
TRANSPORTS = tuple(INPUT_TOPICS)
#: Per-frame outputs, in publishing order (the overlay last: planners wait for the others).
RESULT_TOPICS = ("labels", "certification", "alert", "overlay")
#: Published once per configure with transient-local durability.
CLASS_INFO_TOPIC = "class_info"
DIAGNOSTICS_TOPIC = "/diagnostics"
INPUT_QOS = ("sensor_data", "best_effort", "reliable")
OUTPUT_QOS = ("reliable", "best_effort")


def node_topic(name: str, node: str = NODE_NAME) -> str:
    """Absolute name of the node's output ``name`` (``/demasked_ros/labels``)."""
    return f"/{node}/{name}"


def input_topic(transport: str) -> str:
    """The topic the node subscribes to for ``transport`` (raw or compressed)."""
    return INPUT_TOPICS[transport]


def input_qos(kind: str, depth: int) -> Any:
    """rclpy QoS of the input subscription: sensor_data (best effort), best_effort or reliable."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if kind == "sensor_data":
        profile = qos_profile_sensor_data
        return QoSProfile(history=profile.history, reliability=profile.reliability,
                          durability=profile.durability, depth=depth)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=(ReliabilityPolicy.RELIABLE if kind == "reliable"
                                   else ReliabilityPolicy.BEST_EFFORT))


def output_qos(kind: str, depth: int) -> Any:
    """rclpy QoS of the per-frame outputs (reliable or best_effort, keep last ``depth``)."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=(ReliabilityPolicy.RELIABLE if kind == "reliable"
                                   else ReliabilityPolicy.BEST_EFFORT))


def latched_qos() -> Any:
    """Reliable, transient-local, depth 1: late subscribers still get the class info."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
