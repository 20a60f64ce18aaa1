"""The shipped Fast DDS profile delivers camera-sized frames between processes with best-effort QoS.

Without it (UDP fragments, default shared-memory segment) most frames above ~512 KB are lost; the
node's keep-latest input relies on frames arriving whole.
"""

from __future__ import annotations

import textwrap
import time
from typing import Any

import pytest

pytestmark = pytest.mark.ros

FRAMES = 20
WIDTH, HEIGHT = 480, 360

PUBLISHER = textwrap.dedent(
    f"""
    import time
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("fastdds_profile_test_camera")
    publisher = node.create_publisher(Image, "image", qos_profile_sensor_data)
    deadline = time.monotonic() + 20
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let the reader's matching complete on both sides
    for index in range({FRAMES}):
        frame = Image(height={HEIGHT}, width={WIDTH}, encoding="rgb8", step={WIDTH * 3},
                      data=bytes([index % 256]) * ({WIDTH * HEIGHT * 3}))
        frame.header.stamp.sec = index
        frame.header.frame_id = "camera"
        publisher.publish(frame)
        time.sleep(0.05)
    time.sleep(0.5)
    node.destroy_node()
    rclpy.shutdown()
    """
)


def test_best_effort_480x360_rgb8_frames_arrive_whole(rclpy_context: Any, ros_python: Any,
                                                     ros_env: dict[str, str]) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    assert ros_env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("fastdds_shm.xml")
    node = rclpy.create_node("fastdds_profile_test_viewer", context=rclpy_context)
    received: list[tuple[int, int, int]] = []

    def on_image(msg: Image) -> None:
        data = bytes(msg.data)
        received.append((msg.header.stamp.sec, len(data), data[0] if data else -1))

    node.create_subscription(Image, "image", on_image, qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    publisher = ros_python("-c", PUBLISHER)
    try:
        deadline = time.monotonic() + 40
        while publisher.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        for _ in range(10):
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
    assert publisher.returncode == 0, publisher.communicate()[1]
    assert all(size == WIDTH * HEIGHT * 3 for _, size, _ in received)
    assert all(first == stamp % 256 for stamp, _, first in received)
    assert len(received) >= FRAMES - 2, f"only {len(received)} of {FRAMES} best-effort frames arrived"
