"""The README's main job in miniature: the demo records every output topic to a readable mcap bag."""

from __future__ import annotations

import pytest

from tests.apps.node.harness import REPO

pytestmark = pytest.mark.ros


def test_demo_records_every_output_to_an_mcap_bag(ros_python, ros_env, ros_interfaces, tmp_path):
    from rosbags.rosbag2 import Reader

    from demasked_ros.rosio.bagwriter import package_typestore

    bag = tmp_path / "bag"
    process = ros_python("-m", "demasked_ros.apps.node.demo", "--frames", "2", "--source", "procedural",
                         "--demasker", "solid", "--output", str(bag), cwd=str(REPO))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    lines = out.splitlines()
    assert any("procedural street scenes" in line for line in lines)
    frame_lines = [line for line in lines if line.strip().startswith(("0 ", "1 "))]
    assert len(frame_lines) == 2 and all("%" in line and "ms" in line for line in frame_lines)
    assert f"bag written to {bag.resolve()}" in out
    store = package_typestore()
    with Reader(bag) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics["/demasked_ros/alert"] == "demasked_ros_interfaces/msg/CertificationStatus"
        for topic in ("/image", "/demasked_ros/labels", "/demasked_ros/certification",
                      "/demasked_ros/overlay", "/demasked_ros/class_info", "/diagnostics"):
            assert topic in topics
        alerts = [store.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages()
                  if c.topic == "/demasked_ros/alert"]
    assert len(alerts) == 2
    assert all(a.error_code == 0 and 0.0 <= a.certified_fraction <= 1.0 and a.k >= 5 for a in alerts)
