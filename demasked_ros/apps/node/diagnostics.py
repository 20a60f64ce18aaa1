"""Running statistics of the node, published on ``/diagnostics`` (diagnostic_msgs/DiagnosticArray).

Why: an operator must see at a glance whether the certifier keeps up (rate, dropped frames), how
stale its outputs are (end-to-end latency from the camera stamp), whether input is broken
(rejected frames) or models fail (failed frames, last error), and which model and providers run.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

#: Recent frames the latency percentiles are computed over.
WINDOW = 300


def percentile_ms(seconds: Iterable[float], q: float) -> float:
    """The ``q``-th percentile of durations given in seconds, in milliseconds (nan when empty)."""
    values = list(seconds)
    return float(np.percentile(values, q) * 1000.0) if values else float("nan")


class NodeStatistics:
    """Thread-safe counters and latency windows shared by the subscriber and the worker thread."""

    def __init__(self, window: int = WINDOW) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.certified_frames = 0
        self.dropped = 0
        self.rejected = 0
        self.failed = 0
        self.timeouts = 0
        self.last_error = ""
        self._reported_problems = 0
        self.last_certified_fraction = float("nan")
        self.end_to_end: deque[float] = deque(maxlen=window)
        self.processing: deque[float] = deque(maxlen=window)
        self.certify: deque[float] = deque(maxlen=window)
        self.overhead: deque[float] = deque(maxlen=window)
        self.queue_wait: deque[float] = deque(maxlen=window)
        self.transport: deque[float] = deque(maxlen=window)
        self.decode: deque[float] = deque(maxlen=window)
        self.post: deque[float] = deque(maxlen=window)
        self.certified_fractions: deque[float] = deque(maxlen=window)
        self._publish_times: deque[float] = deque(maxlen=window)

    def count_received(self) -> None:
        """A frame arrived (before validation)."""
        with self._lock:
            self.received += 1

    def count_dropped(self) -> None:
        """A pending frame was replaced by a newer one before processing."""
        with self._lock:
            self.dropped += 1

    def count_rejected(self, reason: str) -> None:
        """A malformed frame was rejected."""
        with self._lock:
            self.rejected += 1
            self.last_error = reason

    def count_failed(self, reason: str, timeout: bool = False) -> None:
        """A frame failed closed (model error, branch failure, timeout)."""
        with self._lock:
            self.failed += 1
            self.timeouts += int(timeout)
            self.last_error = reason

    def record_result(self, end_to_end: float, processing: float, certify: float,
                      certified_fraction: float, queue_wait: float = 0.0, transport: float = 0.0,
                      decode: float = 0.0, post: float = 0.0) -> None:
        """A frame was certified and published; durations in seconds.

        ``queue_wait`` is the time the frame waited in the keep-latest slot for the worker (at most
        one input period when the input outpaces processing); ``transport`` the time from the input
        stamp to the subscription callback, ``decode`` from taking the frame to starting certify(),
        ``post`` from the end of certify() to the alert going out. All are part of the ROS overhead.
        """
        with self._lock:
            self.processed += 1
            self.certified_frames += 1
            self.end_to_end.append(end_to_end)
            self.processing.append(processing)
            self.certify.append(certify)
            self.overhead.append(end_to_end - certify)
            self.queue_wait.append(queue_wait)
            self.transport.append(transport)
            self.decode.append(decode)
            self.post.append(post)
            self.certified_fractions.append(certified_fraction)
            self.last_certified_fraction = certified_fraction
            self._publish_times.append(time.monotonic())

    def new_problems(self) -> int:
        """Failed + rejected frames since the previous call (diagnostics level is WARN while > 0)."""
        with self._lock:
            total = self.failed + self.rejected
            new, self._reported_problems = total - self._reported_problems, total
            return new

    def rate_hz(self, horizon: float = 5.0) -> float:
        """Certified frames per second over the last ``horizon`` seconds."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._publish_times if now - t <= horizon]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], 1e-9)
        return len(recent) / span

    def key_values(self) -> list[tuple[str, str]]:
        """Everything as (key, text) pairs, in a stable order."""
        rate = self.rate_hz()
        with self._lock:
            without_wait = [o - w for o, w in zip(self.overhead, self.queue_wait, strict=True)]
            return [
                ("rate_hz", f"{rate:.2f}"),
                ("frames_received", str(self.received)),
                ("frames_certified", str(self.certified_frames)),
                ("dropped_frames", str(self.dropped)),
                ("rejected_frames", str(self.rejected)),
                ("failed_frames", str(self.failed)),
                ("timeouts", str(self.timeouts)),
                ("end_to_end_latency_ms_p50", f"{percentile_ms(self.end_to_end, 50):.1f}"),
                ("end_to_end_latency_ms_p95", f"{percentile_ms(self.end_to_end, 95):.1f}"),
                ("processing_latency_ms_p50", f"{percentile_ms(self.processing, 50):.1f}"),
                ("certify_ms_p50", f"{percentile_ms(self.certify, 50):.1f}"),
                ("certify_ms_p95", f"{percentile_ms(self.certify, 95):.1f}"),
                ("ros_overhead_ms_p50", f"{percentile_ms(self.overhead, 50):.1f}"),
                ("ros_overhead_ms_p95", f"{percentile_ms(self.overhead, 95):.1f}"),
                ("transport_ms_p50", f"{percentile_ms(self.transport, 50):.1f}"),
                ("transport_ms_p95", f"{percentile_ms(self.transport, 95):.1f}"),
                ("decode_ms_p95", f"{percentile_ms(self.decode, 95):.1f}"),
                ("publish_ms_p50", f"{percentile_ms(self.post, 50):.1f}"),
                ("publish_ms_p95", f"{percentile_ms(self.post, 95):.1f}"),
                ("queue_wait_ms_p50", f"{percentile_ms(self.queue_wait, 50):.1f}"),
                ("queue_wait_ms_p95", f"{percentile_ms(self.queue_wait, 95):.1f}"),
                ("ros_overhead_without_wait_ms_p95", f"{percentile_ms(without_wait, 95):.1f}"),
                ("certified_fraction_last", f"{self.last_certified_fraction:.4f}"),
                ("certified_fraction_mean", f"{np.mean(self.certified_fractions):.4f}"
                 if self.certified_fractions else "nan"),
                ("last_error", self.last_error),
            ]


def diagnostic_array(stamp: object, node_name: str, stats: NodeStatistics, state: str,
                     extra: Iterable[tuple[str, str]]) -> DiagnosticArray:
    """One DiagnosticArray with the node's status: OK while certifying, WARN when not active or when
    frames failed or were rejected since the previous report."""
    values = stats.key_values() + list(extra) + [("state", state)]
    status = DiagnosticStatus()
    status.name = f"{node_name}: certification"
    status.hardware_id = node_name
    if state != "active":
        status.level, status.message = DiagnosticStatus.WARN, f"not processing ({state})"
    elif (new := stats.new_problems()) > 0:
        status.level = DiagnosticStatus.WARN
        status.message = f"{new} failed or rejected frames since the last report; last: {stats.last_error}"
    else:
        status.level, status.message = DiagnosticStatus.OK, "certifying"
    status.values = [KeyValue(key=key, value=value) for key, value in values]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
