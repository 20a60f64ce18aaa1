"""The demasked_ros_interfaces messages: constants, construction, CDR round trip, localhost pub/sub."""

from __future__ import annotations

import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ros

MSG_DIR = Path(__file__).resolve().parents[3] / "msg"


def _status(**overrides: Any) -> Any:
    from builtin_interfaces.msg import Time
    from demasked_ros_interfaces.msg import CertificationStatus
    from sensor_msgs.msg import RegionOfInterest
    from std_msgs.msg import Header

    fields: dict[str, Any] = {
        "header": Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id="camera_front"),
        "mode": CertificationStatus.MODE_DETECTION,
        "scheme": "column",
        "patch_height": 37,
        "patch_width": 41,
        "k": 5,
        "t": 2,
        "certified_fraction": 0.75,
        "alert": True,
        "alerted_fraction": 0.25,
        "alert_regions": [
            RegionOfInterest(x_offset=10, y_offset=20, height=30, width=40),
            RegionOfInterest(x_offset=400, y_offset=300, height=60, width=80, do_rectify=True),
        ],
        "latency_ms": 12.5,
        "error_code": CertificationStatus.ERROR_BRANCH_FAILED,
        "error_text": "branch 3 of 5 failed",
    }
    fields.update(overrides)
    return CertificationStatus(**fields)


def _class_info() -> Any:
    from demasked_ros_interfaces.msg import ClassInfo
    from std_msgs.msg import ColorRGBA, Header

    return ClassInfo(
        header=Header(frame_id="camera_front"),
        class_names=["sky", "building", "road"],
        colors=[ColorRGBA(r=0.5, g=0.5, b=0.5, a=1.0), ColorRGBA(r=0.5, g=0.0, b=0.0, a=1.0),
                ColorRGBA(r=0.5, g=0.25, b=0.5, a=1.0)],
        ignore_index=11,
        model="models/segmenter.onnx",
    )


def test_constants_match_the_msg_definition(ros_interfaces: Path) -> None:
    from demasked_ros_interfaces.msg import CertificationStatus

    text = (MSG_DIR / "CertificationStatus.msg").read_text()
    constants: dict[str, int] = {}
    for line in text.splitlines():
        code = line.split("#", 1)[0].strip()
        if code.startswith("uint8 ") and "=" in code:
            name, number = code[len("uint8 "):].split("=")
            constants[name.strip()] = int(number)
    assert constants, "no constants parsed from CertificationStatus.msg"
    for name, value in constants.items():
        assert getattr(CertificationStatus, name) == value, name
    assert [constants[f"ERROR_{n}"] for n in ("NONE", "INVALID_INPUT", "TIMEOUT", "BRANCH_FAILED",
                                              "MODEL", "INTERNAL")] == [0, 1, 2, 3, 4, 5]
    assert (CertificationStatus.MODE_RECOVERY, CertificationStatus.MODE_DETECTION) == (0, 1)


def test_defaults_are_fail_closed_friendly(ros_interfaces: Path) -> None:
    from demasked_ros_interfaces.msg import CertificationStatus, ClassInfo

    status = CertificationStatus()
    assert status.certified_fraction == 0.0
    assert status.error_code == CertificationStatus.ERROR_NONE
    assert list(status.alert_regions) == []
    info = ClassInfo()
    assert list(info.class_names) == [] and list(info.colors) == []


@pytest.mark.parametrize("make", [_status, _class_info], ids=["CertificationStatus", "ClassInfo"])
def test_cdr_round_trip_preserves_every_field(ros_interfaces: Path, make: Any) -> None:
    from rclpy.serialization import deserialize_message, serialize_message

    original = make()
    data = serialize_message(original)
    assert isinstance(data, bytes) and len(data) > 0
    restored = deserialize_message(data, type(original))
    assert restored == original
    assert restored is not original
    changed = make()
    changed.header.frame_id = "other"
    assert deserialize_message(serialize_message(changed), type(original)) != original


PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import rclpy
    from rclpy.qos import QoSProfile, DurabilityPolicy, ReliabilityPolicy
    from demasked_ros_interfaces.msg import CertificationStatus, ClassInfo
    from sensor_msgs.msg import RegionOfInterest
    from std_msgs.msg import ColorRGBA

    rclpy.init()
    node = rclpy.create_node("interfaces_test_publisher")
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
    info_pub = node.create_publisher(ClassInfo, "class_info", latched)
    status_pub = node.create_publisher(CertificationStatus, "alert", 10)
    info = ClassInfo(class_names=["sky", "road"], ignore_index=11, model="m.onnx",
                     colors=[ColorRGBA(r=1.0, a=1.0), ColorRGBA(b=1.0, a=1.0)])
    info.header.frame_id = "cam"
    info_pub.publish(info)
    print("published class_info", flush=True)
    seq = 0
    try:
        while rclpy.ok():
            msg = CertificationStatus(mode=CertificationStatus.MODE_DETECTION, scheme="column",
                                      k=7, t=1, certified_fraction=0.5, alert=True,
                                      alerted_fraction=0.5, latency_ms=3.0,
                                      alert_regions=[RegionOfInterest(x_offset=seq, width=4, height=2)])
            msg.header.frame_id = "cam"
            msg.header.stamp.sec = seq
            status_pub.publish(msg)
            seq += 1
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    """
)


def test_two_process_pub_sub_on_localhost(rclpy_context: Any, ros_python: Any) -> None:
    """A child process publishes; this process receives the alert stream and the latched ClassInfo
    (subscribing after it was published, as late-joining RViz or planners do)."""
    import rclpy
    from demasked_ros_interfaces.msg import CertificationStatus, ClassInfo
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    publisher = ros_python("-c", PUBLISHER)
    first_line = publisher.stdout.readline()
    assert "published class_info" in first_line, publisher.stderr.read() if publisher.poll() else ""

    node = rclpy.create_node("interfaces_test_subscriber", context=rclpy_context)
    statuses: list[CertificationStatus] = []
    infos: list[ClassInfo] = []
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(ClassInfo, "class_info", infos.append, latched)
    node.create_subscription(CertificationStatus, "alert", statuses.append, 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and (len(statuses) < 3 or not infos):
            executor.spin_once(timeout_sec=0.1)
            assert publisher.poll() is None, publisher.communicate()[1]
    finally:
        executor.shutdown()
        node.destroy_node()

    assert infos, "latched ClassInfo not received"
    assert list(infos[0].class_names) == ["sky", "road"]
    assert infos[0].ignore_index == 11 and infos[0].colors[1].b == 1.0
    assert len(statuses) >= 3, f"received only {len(statuses)} CertificationStatus messages"
    stamps = [s.header.stamp.sec for s in statuses]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    last = statuses[-1]
    assert last.mode == CertificationStatus.MODE_DETECTION and last.k == 7 and last.alert
    assert last.alert_regions[0].x_offset == last.header.stamp.sec
    assert last.header.frame_id == "cam"
    publisher.send_signal(signal.SIGINT)
    assert publisher.wait(timeout=10) in (0, -2, 130), "publisher did not exit cleanly on SIGINT"


def test_publisher_process_cannot_start_with_network_discovery(ros_env: dict[str, str],
                                                             ros_python: Any) -> None:
    from demasked_ros.rosio.ros_env import RosEnvironmentError

    with pytest.raises(RosEnvironmentError, match="ROS_AUTOMATIC_DISCOVERY_RANGE"):
        ros_python("-c", "pass", extra_env={"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"})
    assert ros_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
