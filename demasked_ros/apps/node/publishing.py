"""How the node publishes a frame's outcome: the result, or a fail-closed alert (a mixin of
:class:`~demasked_ros.apps.node.node.DemaskedNode`).

Kept apart from the node's lifecycle and frame handling so that the publishing rules sit in one
place: certification and alert go out before labels, a failed publish is followed by an
ERROR_INTERNAL alert for the same frame, a frame is closed exactly once (a timeout alert and a late
result never both go out), and the status reports the threat model's patch in camera pixels.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from demasked_ros_interfaces.msg import CertificationStatus

from demasked_ros.apps.node.diagnostics import NodeStatistics
from demasked_ros.apps.node.models import LoadedModels
from demasked_ros.apps.node.outputs import Frame, copy_header, publish_image, status_message
from demasked_ros.apps.node.params import NodeConfig
from demasked_ros.apps.node.resolution import FrameCertifier
from demasked_ros.core.alarm import AlarmOutcome
from demasked_ros.engines.certifier import CertificationResult
from demasked_ros.rosio.messages import (
    Geometry,
    RegionOptions,
    failure_messages,
    overlay_image,
    result_messages,
)


class NodePublishing:
    """The node's publishing methods; the node provides the state annotated here."""

    config: NodeConfig | None
    stats: NodeStatistics
    _certifier: FrameCertifier | None
    _publish_lock: threading.Lock
    _active: bool
    _pubs: dict[str, Any]
    get_clock: Callable[[], Any]  # rclpy's Node.get_clock (annotation only: no attribute here)

    def _geometry(self) -> Geometry:
        """What the status reports: the threat model's patch (camera pixels), not the widened one."""
        config, certifier = self.config, self._certifier
        assert config is not None
        if certifier is None:
            return Geometry(config.mode, config.scheme)
        return Geometry(config.mode, config.scheme, certifier.plan.patch, certifier.masks.k,
                        certifier.masks.t)

    def _fail(self, frame: Frame, code: int, text: str, timeout: bool = False) -> None:
        """Publish a fail-closed alert (and an all-zero certification map when the size is known).

        The frame is cancelled too: a timed-out frame's certifier stops before its next chunk.
        """
        frame.cancel.set()
        if self._certifier is not None:
            self._certifier.alarm.reset()  # a failed frame breaks the persistent score's chain
        with self._publish_lock:
            if frame.closed or not self._active or self.config is None:
                return
            frame.closed = True  # no further output for this frame
            if code != CertificationStatus.ERROR_INVALID_INPUT:
                self.stats.count_failed(text, timeout=timeout)
            self._publish_failure(frame, code, text)

    def _publish_failure(self, frame: Frame, code: int, text: str) -> None:
        """The failure alert itself (caller holds the publish lock); the alert goes out even when
        the all-zero certification map cannot be published."""
        header = copy_header(frame.msg.header)
        messages = failure_messages(self._geometry(), code, text, frame.size)
        try:
            if messages.certification is not None:
                publish_image(self._pubs, "certification", header, messages.certification)
        finally:
            self._pubs["alert"].publish(status_message(header, messages, frame.received))

    def _publish_result(self, frame: Frame, image: np.ndarray, result: CertificationResult,
                        alarm: AlarmOutcome, certifier: FrameCertifier, config: NodeConfig,
                        models: LoadedModels) -> None:
        """Certification and alert first, then labels, then the RViz overlay (all or nothing for a
        planner: labels never go out before their certificate; a failed publish is followed by an
        ERROR_INTERNAL alert for the frame)."""
        geometry = Geometry(config.mode, config.scheme, certifier.plan.patch, certifier.masks.k,
                            certifier.masks.t)
        messages = result_messages(image, result.labels, result.certified, geometry,
                                   models.class_info.colors, overlay_alpha=None, alarm=alarm,
                                   regions_options=RegionOptions(config.min_alert_region_area,
                                                                 config.max_alert_regions,
                                                                 config.alert_region_open_radius,
                                                                 config.alert_region_max_fraction))
        assert messages.labels is not None and messages.certification is not None
        with self._publish_lock:
            if frame.closed or not self._active:
                return  # a timeout alert went out already, or the node was deactivated
            frame.closed = True
            header = copy_header(frame.msg.header)
            status = status_message(header, messages, frame.received)
            try:
                publish_image(self._pubs, "certification", header, messages.certification)
                self._pubs["alert"].publish(status)
                publish_image(self._pubs, "labels", header, messages.labels)
            except Exception as error:
                text = f"publishing the result failed: {type(error).__name__}: {error}"
                self.stats.count_failed(text)
                self._publish_failure(frame, CertificationStatus.ERROR_INTERNAL, text)
                raise
            now_ns = self.get_clock().now().nanoseconds
            published = time.monotonic()
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        end_to_end = (now_ns - stamp_ns) / 1e9 if stamp_ns else status.latency_ms / 1000.0
        fraction = messages.status["certified_fraction"]
        self.stats.record_result(end_to_end, status.latency_ms / 1000.0, result.timings.get("total", 0.0),
                                 fraction, queue_wait=frame.started - frame.received,
                                 transport=(frame.received_ns - stamp_ns) / 1e9 if stamp_ns else 0.0,
                                 decode=frame.certify_started - frame.started,
                                 post=published - frame.certify_ended)
        if config.publish_overlay:
            marked = overlay_image(image, result.labels, result.certified, models.class_info.colors,
                                   config.overlay_alpha)
            with self._publish_lock:
                if self._active and "overlay" in self._pubs:
                    publish_image(self._pubs, "overlay", header, marked)

