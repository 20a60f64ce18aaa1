"""Node statistics and the /diagnostics message built from them."""

from __future__ import annotations

import pytest

pytest.importorskip("diagnostic_msgs.msg", reason="needs the ROS 2 message wheels (requirements/ros.txt)")

from diagnostic_msgs.msg import DiagnosticStatus

from demasked_ros.apps.node.diagnostics import NodeStatistics, diagnostic_array, percentile_ms


def test_latency_percentiles_and_overhead_are_per_frame():
    stats = NodeStatistics()
    for index in range(10):
        stats.count_received()
        stats.record_result(end_to_end=0.1 + index / 1000, processing=0.09, certify=0.08,
                            certified_fraction=0.5, queue_wait=0.005, transport=0.002)
    values = dict(stats.key_values())
    assert values["frames_received"] == values["frames_certified"] == "10"
    assert values["certify_ms_p50"] == "80.0"
    assert float(values["ros_overhead_ms_p50"]) == pytest.approx(percentile_ms(
        [0.02 + i / 1000 for i in range(10)], 50), abs=0.05)
    assert float(values["ros_overhead_without_wait_ms_p95"]) == pytest.approx(
        float(values["ros_overhead_ms_p95"]) - 5.0, abs=0.05)
    assert values["certified_fraction_mean"] == "0.5000"


def test_level_is_warn_only_while_new_problems_arrive():
    stats = NodeStatistics()
    stats.count_failed("model crashed")

    def level(state="active"):
        array = diagnostic_array(_stamp(), "demasked_ros", stats, state, [("model", "m")])
        (status,) = array.status
        assert status.hardware_id == "demasked_ros" and {kv.key for kv in status.values} >= {
            "rate_hz", "dropped_frames", "rejected_frames", "model", "state"}
        return status.level, status.message

    first = level()
    assert first[0] == DiagnosticStatus.WARN and "model crashed" in first[1]
    assert level()[0] == DiagnosticStatus.OK
    stats.count_rejected("bad encoding")
    assert level()[0] == DiagnosticStatus.WARN
    assert level("inactive") == (DiagnosticStatus.WARN, "not processing (inactive)")


def _stamp():
    from builtin_interfaces.msg import Time

    return Time(sec=1, nanosec=2)
