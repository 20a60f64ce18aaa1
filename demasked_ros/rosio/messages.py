"""Certification results as output messages: the one place ``CertificationStatus`` is filled.

:func:`result_messages` turns labels and a certificate into the encoded ``labels``,
``certification`` and ``overlay`` images and the ``CertificationStatus`` fields;
:func:`failure_messages` gives the fail-closed equivalent (nothing certified, an alert, the error).
Both return plain data (:class:`OutputMessages`), which the node turns into rclpy messages and the
evaluator into bag messages, so both publish the same thing without either importing the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from demasked_ros.core.alarm import AlarmOutcome
from demasked_ros.core.visualize import certification_image, overlay
from demasked_ros.rosio.image_codec import encode_mono8, encode_mono16, encode_rgb8
from demasked_ros.rosio.regions import alert_regions

#: ``CertificationStatus.MODE_*`` by mode name (msg/CertificationStatus.msg).
MODE_CODES = {"recovery": 0, "detection": 1}
#: ``CertificationStatus.ERROR_*`` (msg/CertificationStatus.msg).
ERROR_NONE = 0
ERROR_INVALID_INPUT = 1
ERROR_TIMEOUT = 2
ERROR_BRANCH_FAILED = 3
ERROR_MODEL = 4
ERROR_INTERNAL = 5


@dataclass(frozen=True)
class EncodedImage:
    """A ``sensor_msgs/Image`` body: encoding, row step, bytes and size."""

    encoding: str
    step: int
    data: bytes
    height: int
    width: int


@dataclass(frozen=True)
class Geometry:
    """What the status reports about the certificate: mode, scheme, patch (camera px), K and T."""

    mode: str
    scheme: str
    patch: tuple[int, int] = (0, 0)
    k: int = 0
    t: int = 0


@dataclass(frozen=True)
class RegionOptions:
    """How alert regions are formed (see :func:`demasked_ros.rosio.regions.alert_regions`).

    ``min_area=None`` reports no regions.
    """

    min_area: int | None = None
    max_regions: int = 32
    open_radius: int = 0
    max_box_fraction: float = 1.0


@dataclass
class OutputMessages:
    """One frame's outputs; ``status`` holds ``CertificationStatus`` fields (no header, latency).

    ``status["alert_regions"]`` is a list of ``(x, y, height, width)``; so is
    ``status["suspected_patch"]`` (one box, all zeros when there is none).
    """

    status: dict[str, Any]
    labels: EncodedImage | None = None
    certification: EncodedImage | None = None
    overlay: EncodedImage | None = None


def _encoded(encoded: tuple[str, int, bytes], height: int, width: int) -> EncodedImage:
    encoding, step, data = encoded
    return EncodedImage(encoding, step, data, height, width)


def status_fields(geometry: Geometry, certified_fraction: float | None,
                  regions: Sequence[tuple[int, int, int, int]] = (), error_code: int = ERROR_NONE,
                  error_text: str = "", alarm: AlarmOutcome | None = None) -> dict[str, Any]:
    """``CertificationStatus`` fields; ``certified_fraction=None`` is a failure (fail closed).

    ``alert`` is the calibrated patch alarm when ``alarm`` carries a decision (empirical, see
    docs/ATTACKS.md), else "some pixel is uncertified"; a failure always alerts.
    """
    failed = certified_fraction is None
    fraction = 0.0 if certified_fraction is None else float(certified_fraction)
    if failed:
        alert = True
    elif alarm is not None and alarm.alarmed is not None:
        alert = bool(alarm.alarmed)
    else:
        alert = bool(fraction < 1.0)
    roi = (0, 0, 0, 0)
    if not failed and alarm is not None and alarm.roi is not None:
        y, x, height, width = alarm.roi
        roi = (int(x), int(y), int(height), int(width))
    return {"mode": MODE_CODES[geometry.mode], "scheme": geometry.scheme,
            "patch_height": int(geometry.patch[0]), "patch_width": int(geometry.patch[1]),
            "k": int(geometry.k), "t": int(geometry.t), "certified_fraction": fraction,
            "alert": alert, "alerted_fraction": 1.0 if failed else 1.0 - fraction,
            "alert_regions": list(regions), "error_code": error_code, "error_text": error_text,
            "patch_score": 0.0 if failed or alarm is None else float(alarm.score),
            "persistent_score": 0.0 if failed or alarm is None else float(alarm.persistent_score),
            "suspected_patch": roi}


def result_messages(image: np.ndarray, labels: np.ndarray, certified: np.ndarray, geometry: Geometry,
                    colors: Sequence[tuple[int, int, int]], *, overlay_alpha: float | None = 0.5,
                    min_region_area: int | None = None, max_regions: int = 32,
                    regions_options: RegionOptions | None = None,
                    alarm: AlarmOutcome | None = None) -> OutputMessages:
    """Encoded outputs of a certified frame.

    Labels are mono8 for up to 255 classes (``len(colors)``), else mono16. ``overlay_alpha=None``
    skips the overlay; ``min_region_area=None`` reports no alert regions (``regions_options``, when
    given, replaces both region arguments). ``alarm`` fills ``patch_score``, ``suspected_patch``
    and, when calibrated, ``alert``.
    """
    height, width = labels.shape[:2]
    labels_encoded = encode_mono8(labels) if len(colors) <= 255 else encode_mono16(labels)
    options = regions_options or RegionOptions(min_region_area, max_regions)
    regions: list[tuple[int, int, int, int]] = []
    if options.min_area is not None:
        regions = [(r.x, r.y, r.height, r.width)
                   for r in alert_regions(~certified, options.min_area, options.max_regions,
                                          open_radius=options.open_radius,
                                          max_box_fraction=options.max_box_fraction)]
    fraction = float(certified.mean())
    messages = OutputMessages(
        status=status_fields(geometry, fraction, regions, alarm=alarm),
        labels=_encoded(labels_encoded, height, width),
        certification=_encoded(encode_mono8(certification_image(certified)), height, width))
    if overlay_alpha is not None:
        messages.overlay = overlay_image(image, labels, certified, colors, overlay_alpha)
    return messages


def overlay_image(image: np.ndarray, labels: np.ndarray, certified: np.ndarray,
                  colors: Sequence[tuple[int, int, int]], alpha: float = 0.5) -> EncodedImage:
    """The RViz overlay (class colours, uncertified pixels hatched) as an rgb8 image."""
    marked = overlay(image, labels, certified, colors, alpha=alpha)
    return _encoded(encode_rgb8(marked), *labels.shape[:2])


def failure_messages(geometry: Geometry, error_code: int, error_text: str,
                     size: tuple[int, int] | None = None) -> OutputMessages:
    """Fail-closed outputs: an alert with nothing certified and the error, plus an all-zero
    certification map over the whole frame when its ``size`` is known."""
    if size is None:
        return OutputMessages(status=status_fields(geometry, None, (), error_code, error_text))
    height, width = size
    status = status_fields(geometry, None, [(0, 0, height, width)], error_code, error_text)
    zeros = encode_mono8(np.zeros(size, np.uint8))
    return OutputMessages(status=status, certification=_encoded(zeros, height, width))
