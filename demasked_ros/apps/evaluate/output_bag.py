"""``--output-bag``: the evaluator's results as the node would have published them, in a rosbag2.

Topics and messages come from the ROS I/O ring (:mod:`demasked_ros.rosio.topics`,
:func:`demasked_ros.rosio.messages.result_messages`), the same code the node publishes with, so a
bag written here replays like a recording of the node.
"""

from __future__ import annotations

from pathlib import Path

from demasked_ros.apps.evaluate.config import EvalConfig
from demasked_ros.apps.evaluate.runner import FrameOutcome
from demasked_ros.core.classes import ClassInfo
from demasked_ros.rosio.bagwriter import CERTIFICATION_STATUS_TYPE, BagWriter
from demasked_ros.rosio.messages import ERROR_INVALID_INPUT, Geometry, failure_messages, result_messages
from demasked_ros.rosio.topics import RESULT_TOPICS, node_topic
from demasked_ros.rosio.typestore import build_message

#: The node's per-frame output topics by short name.
NODE_TOPICS = {name: node_topic(name) for name in RESULT_TOPICS}


class BagOutput:
    """Sink writing the node's output topics for one configuration into a rosbag2.

    Topics (the node's names, stamps of the input frames): ``/demasked_ros/labels`` (mono8/16 class
    ids), ``/demasked_ros/certification`` (mono8, 255 = certified), ``/demasked_ros/overlay`` (rgb8)
    and ``/demasked_ros/alert`` (``CertificationStatus`` of the interfaces package; failed frames go out with
    alert = true and the error, fail-closed like the node).
    """

    def __init__(self, path: Path, config: EvalConfig, class_info: ClassInfo, storage: str) -> None:
        self.config, self.class_info = config, class_info
        self.writer = BagWriter(path, storage, class_info=class_info, overwrite=True)
        self.writer.open()

    def wants_arrays(self, index: int) -> bool:
        """Every frame."""
        return True

    def write(self, outcome: FrameOutcome) -> None:
        """Write the four topics of one frame."""
        result = outcome.results.get(self.config.config_id)
        if result is None:
            return
        record, stamp = result.record, outcome.stamp_ns
        labels, certified, frame = result.labels, result.certified, outcome.frame
        patch = record.get("patch_px") or [0, 0]
        geometry = Geometry(self.config.mode, self.config.scheme, (int(patch[0]), int(patch[1])),
                            int(record.get("k") or 0), int(record.get("t") or 0))
        if labels is not None and certified is not None and frame is not None:
            messages = result_messages(frame.image, labels, certified, geometry, self.class_info.colors)
            for name in ("labels", "certification", "overlay"):
                image = getattr(messages, name)
                if image is not None:
                    self.writer.write_encoded(NODE_TOPICS[name], stamp, image)
        else:  # fail closed, like the node
            messages = failure_messages(geometry, ERROR_INVALID_INPUT, str(record.get("error", "")))
        fields = dict(messages.status)
        fields["alert_regions"] = [self._roi(box) for box in fields["alert_regions"]]
        fields["suspected_patch"] = self._roi(fields["suspected_patch"])
        self.writer.write_fields(NODE_TOPICS["alert"], CERTIFICATION_STATUS_TYPE, stamp, frame_id="camera",
                                 latency_ms=1000 * float(record.get("latency_s") or 0.0), **fields)

    def _roi(self, box: tuple[int, int, int, int]) -> object:
        """A ``sensor_msgs/RegionOfInterest`` from ``(x, y, height, width)``."""
        x, y, height, width = box
        return build_message(self.writer.typestore, "sensor_msgs/msg/RegionOfInterest", x_offset=x,
                             y_offset=y, height=height, width=width, do_rectify=False)

    def close(self) -> None:
        """Finish the bag (metadata)."""
        self.writer.close()
