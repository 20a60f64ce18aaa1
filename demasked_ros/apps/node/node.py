"""``DemaskedNode``: a managed (lifecycle) ROS 2 node around the library's :class:`Certifier`.

Data flow: ``image`` (or ``image/compressed``) -> executor thread hands the message to a
keep-latest worker -> worker decodes and validates it, certifies it (masks first, K branches,
aggregation: all inside the Certifier; with ``working_height/width`` the frame is first resized
and the masks built for the widened patch, see :mod:`.resolution`) -> publishes ``~/labels``,
``~/certification``, ``~/overlay`` and ``~/alert`` with the input header (and size).
``/diagnostics`` is published on a timer, ``~/class_info`` once per configure (transient local).
With ``pipeline`` (default) the worker is a :class:`~.pipeline.FramePipeline`: frame t+1 is
decoded, resized and staged on the device while frame t is certified; results still leave in
arrival order, and a failed preparation fails closed in that order.

Fail closed: a malformed frame, a model or branch error, or a frame exceeding ``frame_timeout``
publishes an alert with nothing certified and the error (plus an all-zero certification map when
the frame size is known); a result is only ever published with the header of the frame it was
computed from. A timed-out frame is cancelled: the certifier stops before its next chunk of
branches. Results go out certification and alert first, labels after, and a failed publish is
followed by an error alert, so a planner never sees labels without their certificate.

Memory: compressed frames are checked from their header before decoding, the executor keeps one
frame's working set within ``memory_budget``, and after a large frame the freed memory is handed
back to the OS (:func:`~demasked_ros.engines.memory.release_memory`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import cv2
import numpy as np
from demasked_ros_interfaces.msg import CertificationStatus
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage

from demasked_ros.apps.node.diagnostics import NodeStatistics, diagnostic_array
from demasked_ros.apps.node.models import LoadedModels, load_models
from demasked_ros.apps.node.outputs import (
    Frame,
    class_info_message,
    create_input,
    create_publishers,
)
from demasked_ros.apps.node.params import (
    NodeConfig,
    NodeConfigError,
    config_from_values,
)
from demasked_ros.apps.node.pipeline import FrameWorker, PreparedFrame, make_frame_worker
from demasked_ros.apps.node.publishing import NodePublishing
from demasked_ros.apps.node.resolution import (
    CertifierCache,
    FrameCertifier,
    build_frame_certifier,
    describe_alarm,
)
from demasked_ros.apps.node.ros_params import declare_parameters, read_parameters
from demasked_ros.core.errors import CoreError
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.memory import release_memory
from demasked_ros.rosio import topics
from demasked_ros.rosio.image_codec import ImageCodecError, decode_compressed, decode_raw

DEFAULT_NODE_NAME = topics.NODE_NAME
_LOG_THROTTLE_S = 2.0
#: After a frame with more pixels than this, freed memory is returned to the OS (malloc_trim), and
#: again after each of the next :data:`RELEASE_FOLLOWING` frames (the output queues and DDS
#: histories let go of the large messages only as newer ones replace them).
RELEASE_ABOVE_PIXELS = 2_000_000
RELEASE_FOLLOWING = 8


class DemaskedNode(NodePublishing, LifecycleNode):
    """The certifying segmentation node (default name ``demasked_ros``); see the module docstring.

    ``configure`` validates parameters, loads the models and (with ``expected_height/width``)
    builds the masks; ``activate`` starts processing; ``deactivate`` stops it (in-flight results
    are discarded); ``cleanup``/``shutdown`` release everything. :attr:`configure_error` holds
    the reason of the last failed configure.
    """

    def __init__(self, node_name: str = DEFAULT_NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._parameter_problems = declare_parameters(self)
        self.configure_error = ""
        self.config: NodeConfig | None = None
        self.stats = NodeStatistics()
        self._models: LoadedModels | None = None
        self._certifier: FrameCertifier | None = None
        self._cache = CertifierCache()
        self._releases_due = 0
        self._publish_lock = threading.Lock()
        self._active = False
        self._state_name = "unconfigured"
        self._entities: list[Any] = []
        self._timers: list[Any] = []
        self._pubs: dict[str, Any] = {}
        self._worker = self._make_worker(pipelined=True)
        from demasked_ros.rosio.ros_env import check_ros_environment

        for finding in check_ros_environment(strict=False):  # a robot may talk to its network
            self.get_logger().warning(finding)

    # ----------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate parameters, load models, create topics; FAILURE (with a clear log) on any error."""
        try:
            if self._parameter_problems:
                raise NodeConfigError("; ".join(self._parameter_problems))
            config = config_from_values(read_parameters(self))
            cv2.setNumThreads(config.threads)
            models = load_models(config, self.get_logger())
            self.config, self._models, self.stats = config, models, NodeStatistics()
            self._worker = self._make_worker(config.pipeline)  # the old one stopped at cleanup
            self._create_entities(config)
            if config.expected_size is not None:
                self._certifier = self._build_certifier(*config.expected_size)
            self._publish_class_info(models)
        except Exception as error:  # configure must fail cleanly on anything, e.g. a plugin's bug
            known = (NodeConfigError, EngineError, CoreError, ImportError, OSError)
            self.configure_error = str(error) if isinstance(error, known) else \
                f"{type(error).__name__}: {error}"
            self.get_logger().error(f"configure failed: {self.configure_error}")
            self._teardown()
            return TransitionCallbackReturn.FAILURE
        self.configure_error = ""
        self._state_name = "inactive"
        self.get_logger().info(f"configured: {config.describe()}; {models.describe()}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start processing incoming frames."""
        self._active = True
        self._state_name = "active"
        self._worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop processing; a frame being certified now is finished but not published."""
        self._active = False
        self._state_name = "inactive"
        self._worker.pause()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release models, masks and topics (back to unconfigured)."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything; the node is finalized."""
        self._teardown()
        self._state_name = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Recover to unconfigured after an unexpected transition error."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    @property
    def state_name(self) -> str:
        """unconfigured, inactive, active or finalized."""
        return self._state_name

    def _teardown(self) -> None:
        self._active = False
        self._worker.stop()
        for timer in self._timers:
            self.destroy_timer(timer)
        for entity in self._entities:
            if hasattr(entity, "topic_name") and hasattr(entity, "publish"):
                self.destroy_publisher(entity)
            else:
                self.destroy_subscription(entity)
        self._timers, self._entities, self._pubs = [], [], {}
        self._models, self._certifier, self.config = None, None, None
        self._cache.clear()
        self._state_name = "unconfigured"

    # ----------------------------------------------------------------------------- topics
    def _create_entities(self, config: NodeConfig) -> None:
        self._pubs = create_publishers(self, config)
        self._entities.extend(self._pubs.values())
        self._entities.append(create_input(self, config, self._on_image))
        self._timers.append(self.create_timer(config.diagnostics_period, self._publish_diagnostics))
        watchdog_period = max(0.005, min(0.05, config.frame_timeout / 4))
        self._timers.append(self.create_timer(watchdog_period, self._watchdog))

    def _publish_class_info(self, models: LoadedModels) -> None:
        self._pubs["class_info"].publish(class_info_message(models, self.get_clock().now().to_msg()))

    def _publish_diagnostics(self) -> None:
        models, publisher = self._models, self._pubs.get("diagnostics")
        if models is None or publisher is None:
            return
        certifier = self._certifier
        extra = [*models.key_values(), *(certifier.plan.key_values() if certifier else []),
                 ("masks", certifier.masks.describe() if certifier else "not built yet"),
                 ("alarm", describe_alarm(certifier.alarm) if certifier else "not built yet"),
                 ("masks_built", str(self._cache.built)),
                 ("in_flight", str(self._worker.busy)),
                 ("pipeline", "on" if self.config is not None and self.config.pipeline else "off")]
        publisher.publish(diagnostic_array(self.get_clock().now().to_msg(), self.get_name(), self.stats,
                                           self._state_name, extra))

    # ----------------------------------------------------------------------------- frames
    def _on_image(self, msg: Any) -> None:
        """Executor thread: count and hand over; never blocks on processing."""
        self.stats.count_received()
        if self._active:
            self._worker.submit(Frame(msg=msg, received=time.monotonic(),
                                       received_ns=self.get_clock().now().nanoseconds))

    def _make_worker(self, pipelined: bool) -> FrameWorker[Frame]:
        return make_frame_worker(pipelined, self._prepare_frame, self._certify_frame, self._on_worker_error,
                                 on_drop=lambda _: self.stats.count_dropped())

    def _prepare_frame(self, frame: Frame) -> PreparedFrame | None:
        """Worker (pipelined: beside the previous frame's certification): decode and validate,
        pick the certifier for the size, resize and stage. Failures are returned, not published:
        :meth:`_certify_frame` publishes them in arrival order."""
        config = self.config
        if config is None:
            return None
        frame.started = time.monotonic()
        try:
            image = self._decode(frame, config)
        except ImageCodecError as error:
            return PreparedFrame(rejected=str(error), log=f"rejected frame: {error}")
        frame.size = (int(image.shape[0]), int(image.shape[1]))
        try:
            certifier = self._certifier_for(*frame.size)
        except (EngineError, CoreError, NodeConfigError) as error:
            return PreparedFrame(rejected=str(error),
                                 log=f"cannot certify a {frame.size[0]}x{frame.size[1]} frame: {error}")
        try:
            staged = certifier.prepare(image)
        except EngineError as error:
            return PreparedFrame(error=str(error), log=f"certification failed: {error}")
        return PreparedFrame(image, certifier, staged, seconds=time.monotonic() - frame.started)

    def _certify_frame(self, frame: Frame, prepared: PreparedFrame | None) -> None:
        """Worker: one prepared frame, then hand a large frame's memory back to the OS."""
        try:
            self._certify_prepared(frame, prepared)
        finally:
            if frame.size is not None and frame.size[0] * frame.size[1] > RELEASE_ABOVE_PIXELS:
                self._releases_due = RELEASE_FOLLOWING + 1
            if self._releases_due > 0:
                self._releases_due -= 1
                release_memory()

    def _certify_prepared(self, frame: Frame, prepared: PreparedFrame | None) -> None:
        """Certify a prepared frame and publish it, or fail closed, in arrival order."""
        config, models = self.config, self._models
        if config is None or models is None or prepared is None:
            return
        frame.started = time.monotonic() - prepared.seconds  # statistics: a wait is queue wait
        if prepared.rejected:
            self.stats.count_rejected(prepared.rejected)
            self.get_logger().warning(prepared.log, throttle_duration_sec=_LOG_THROTTLE_S)
            self._fail(frame, CertificationStatus.ERROR_INVALID_INPUT, f"invalid input: {prepared.rejected}")
            return
        certifier = prepared.certifier
        if prepared.error or prepared.image is None:
            self.get_logger().error(prepared.log, throttle_duration_sec=_LOG_THROTTLE_S)
            self._fail(frame, CertificationStatus.ERROR_BRANCH_FAILED, prepared.error)
            return
        frame.certify_started = time.monotonic()
        try:
            stamp = frame.msg.header.stamp
            seconds = stamp.sec + stamp.nanosec * 1e-9
            result, alarm = certifier.certify_with_alarm(prepared.staged, cancel=frame.cancel,
                                                         stamp=seconds if seconds > 0 else None)
        except EngineError as error:
            self.get_logger().error(f"certification failed: {error}", throttle_duration_sec=_LOG_THROTTLE_S)
            self._fail(frame, CertificationStatus.ERROR_BRANCH_FAILED, str(error))
            return
        frame.certify_ended = time.monotonic()
        self._publish_result(frame, prepared.image, result, alarm, certifier, config, models)

    def _decode(self, frame: Frame, config: NodeConfig) -> np.ndarray:
        msg = frame.msg
        if isinstance(msg, CompressedImage):
            return decode_compressed(msg.format, msg.data, config.max_image_pixels,
                                     on_warning=self._decoder_warning)
        return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data, config.max_image_pixels)

    def _decoder_warning(self, line: str) -> None:
        self.get_logger().warning(f"image decoder: {line}", throttle_duration_sec=_LOG_THROTTLE_S)

    def _certifier_for(self, height: int, width: int) -> FrameCertifier:
        certifier = self._cache.get(height, width) or self._build_certifier(height, width)
        self._certifier = certifier
        return certifier

    def _build_certifier(self, height: int, width: int) -> FrameCertifier:
        config, models = self.config, self._models
        assert config is not None and models is not None
        certifier = build_frame_certifier(config, models, height, width)
        self._cache.put(certifier)
        self.get_logger().info(f"masks built: {certifier.plan.describe()} ({self._cache.built} builds "
                               "so far)", throttle_duration_sec=_LOG_THROTTLE_S)
        return certifier

    def _on_worker_error(self, frame: Frame, error: BaseException) -> None:
        self.get_logger().error(f"internal error on a frame: {type(error).__name__}: {error}",
                                throttle_duration_sec=_LOG_THROTTLE_S)
        self._fail(frame, CertificationStatus.ERROR_INTERNAL,
                   f"internal error: {type(error).__name__}: {error}")

    def _watchdog(self) -> None:
        """Executor thread: a frame worked on for over ``frame_timeout`` fails closed now; its
        result is discarded. Only the oldest open frame may fail, so outputs stay in order."""
        config = self.config
        if config is None:
            return
        for frame, seconds in self._worker.in_progress(time.monotonic()):
            if frame.closed:
                continue
            if seconds > config.frame_timeout:
                self._fail(frame, CertificationStatus.ERROR_TIMEOUT,
                           f"frame exceeded frame_timeout = {config.frame_timeout:g} s", timeout=True)
            return
