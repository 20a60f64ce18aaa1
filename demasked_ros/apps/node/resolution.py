"""Certifying at a working resolution below the camera's: resize first, widen the patch, upscale.

Why: K demaskings of a 1920x1080 frame are far too slow; certifying at 480x270 is not. Masking
must still happen on the pixels the threat model speaks of, so the node resizes the camera frame
*before* masking and builds the masks for a *widened* patch: :class:`FrameResizer.patch` measures,
from the resize operator itself, every working-resolution pixel an original ``ph x pw`` patch can
influence, over every patch position. An attack on the camera frame is therefore an attack by the
widened patch on the working frame, which the working-resolution certificate covers. Labels and
the certificate are copied back to the camera size with nearest-neighbour upscaling: every camera
pixel takes the label and certificate of exactly one working pixel, so a certified camera pixel's
label cannot be changed by the original patch either.

By default the working size is automatic: a frame with more than ``working_max_pixels`` pixels is
resized, aspect kept, to the largest size within that budget (:func:`fit_within`); explicit
``working_height/width`` override it, ``working_max_pixels: 0`` turns it off. Built certifiers are
kept for the last few camera sizes (:class:`CertifierCache`), so alternating sizes do not rebuild
masks each time.

The threat model stays the user's: the patch is resolved at the camera size (``patch_fraction`` of
the *original* area, or ``patch_height/width`` in original pixels) and that size is what the node
reports; the widened patch only fixes the mask geometry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from demasked_ros.apps.node.models import LoadedModels
from demasked_ros.apps.node.params import NodeConfig, NodeConfigError
from demasked_ros.core.alarm import AlarmCalibration, AlarmOutcome, PatchAlarm, load_calibrations
from demasked_ros.core.errors import CoreError
from demasked_ros.core.masks import MaskSet
from demasked_ros.core.resize import fit_within
from demasked_ros.engines.certifier import CertificationResult, Certifier, PreparedImage
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.factory import calibration_models
from demasked_ros.engines.resizing import FrameResizer

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskPlan:
    """What the camera size fixes: the original patch, the resizer (if any) and the masks.

    Attributes:
        camera_hw: frame size the plan is for (height, width).
        patch: the threat model's patch in camera pixels (reported in CertificationStatus).
        masks: masks at the working size, built for :attr:`working_patch`.
        resizer: camera -> working size resizer; None when certifying at the camera size.
    """

    camera_hw: tuple[int, int]
    patch: tuple[int, int]
    masks: MaskSet
    resizer: FrameResizer | None

    @property
    def working_hw(self) -> tuple[int, int]:
        """The size the masks, demaskers and segmenter run at."""
        return self.masks.height, self.masks.width

    @property
    def working_patch(self) -> tuple[int, int]:
        """The (widened) patch the masks were built for, in working pixels."""
        return self.masks.patch

    def key_values(self) -> list[tuple[str, str]]:
        """Diagnostics entries: camera and working size, original and widened patch."""
        resized = self.resizer is not None
        return [("camera_size", _size(self.camera_hw)),
                ("working_size", _size(self.working_hw) if resized else "native"),
                ("patch", _size(self.patch)),
                ("working_patch", _size(self.working_patch))]

    def describe(self) -> str:
        """One line for logs."""
        if self.resizer is None:
            return f"{self.masks.describe()}"
        return (f"{self.masks.describe()}; camera {_size(self.camera_hw)} resized to "
                f"{_size(self.working_hw)}, patch {_size(self.patch)} widened to "
                f"{_size(self.working_patch)}")


def plan_masks(config: NodeConfig, height: int, width: int) -> MaskPlan:
    """Resolve the patch at the camera size, widen it for the working size, build the masks.

    Raises:
        NodeConfigError: a patch that does not fit the frame, a working size larger than the
            frame, or masks that cannot be built.
    """
    spec = config.spec
    try:
        patch = spec.patch_px(height, width)
    except CoreError as error:
        raise NodeConfigError(f"cannot build masks for a {height}x{width} frame: {error}") from error
    try:
        working = spec.working_hw(height, width)
        if spec.working_size is None and config.working_max_pixels:
            working = fit_within((height, width), config.working_max_pixels)
    except CoreError as error:
        raise NodeConfigError(str(error)) from error
    if working is None:
        return MaskPlan((height, width), patch, _masks(config, (height, width), patch), None)
    try:
        resizer = FrameResizer((height, width), working, spec.interpolation)
        widened = resizer.patch(patch)
    except (EngineError, CoreError) as error:
        raise NodeConfigError(f"cannot resize a {height}x{width} frame to {_size(working)}: "
                              f"{error}") from error
    return MaskPlan((height, width), patch, _masks(config, working, widened), resizer)


def _masks(config: NodeConfig, size: tuple[int, int], patch: tuple[int, int]) -> MaskSet:
    """The spec's masks for a ``size`` frame and an explicit pixel ``patch``, as a NodeConfigError."""
    try:
        return config.spec.masks(size[0], size[1], patch)
    except CoreError as error:
        raise NodeConfigError(f"cannot build masks for a {_size(size)} frame: {error}") from error


class FrameCertifier:
    """A :class:`Certifier` for one camera size, run at the plan's working size.

    :meth:`certify` takes and returns camera-size arrays, so the node publishes every image at
    the input size whatever the working size.
    """

    def __init__(self, plan: MaskPlan, certifier: Certifier, alarm: PatchAlarm | None = None) -> None:
        if certifier.masks is not plan.masks:
            raise NodeConfigError("the certifier must use the plan's masks")
        self.plan = plan
        self.certifier = certifier
        self.alarm = alarm or PatchAlarm(plan.masks)

    @property
    def masks(self) -> MaskSet:
        """The masks (at the working size)."""
        return self.plan.masks

    @property
    def camera_hw(self) -> tuple[int, int]:
        """The frame size this certifier accepts."""
        return self.plan.camera_hw

    def prepare(self, image: np.ndarray) -> CameraFrame:
        """Resize a camera-size frame to the working size, check it and let the executor stage it.

        The node's pipeline runs this for frame t+1 while frame t is certified. Timings:
        ``resize`` (with a working size) and ``stage``.

        Raises:
            EngineError: a frame of another size, or a failed staging (callers fail closed).
        """
        if not isinstance(image, np.ndarray) or image.shape[:2] != self.camera_hw:
            raise EngineError(f"frame is {getattr(image, 'shape', type(image))}, this certifier "
                              f"expects {_size(self.camera_hw)}")
        start = time.perf_counter()
        resizer = self.plan.resizer
        working = image if resizer is None else resizer.resize(image)
        resized = time.perf_counter()
        prepared = self.certifier.prepare(working)
        timings = {"stage": time.perf_counter() - resized}
        if resizer is not None:
            timings["resize"] = resized - start
        return CameraFrame(prepared, self.camera_hw, timings)

    def certify(self, image: np.ndarray | CameraFrame,
                cancel: threading.Event | None = None) -> CertificationResult:
        """Labels and certificate for a camera-size frame (or its :meth:`prepare` result), computed
        at the working size.

        ``branch_labels`` stay at the working size. Timings gain ``stage``, and ``resize`` and
        ``upscale`` with a working size; ``total`` includes the preparation. ``cancel`` abandons
        the frame between branch chunks (see :meth:`Certifier.certify`).

        Raises:
            EngineError: a frame of another size, any branch failure or cancellation (callers
                fail closed).
        """
        return self._certify(image, with_alarm=False, cancel=cancel)[0]

    def certify_with_alarm(self, image: np.ndarray | CameraFrame, cancel: threading.Event | None = None,
                           stamp: float | None = None) -> tuple[CertificationResult, AlarmOutcome]:
        """:meth:`certify` plus the patch alarm (scored at the working size; the suspected patch
        in camera pixels; ``stamp``, the frame's time in seconds, feeds the persistent score's
        gap rule). The alarm reads the branch labels only; the certificate is unchanged."""
        result, alarm = self._certify(image, with_alarm=True, cancel=cancel, stamp=stamp)
        if alarm is None:
            raise EngineError("the patch alarm produced no outcome")
        return result, alarm

    def _certify(self, image: np.ndarray | CameraFrame, with_alarm: bool, cancel: threading.Event | None,
                 stamp: float | None = None) -> tuple[CertificationResult, AlarmOutcome | None]:
        frame = image if isinstance(image, CameraFrame) else self.prepare(image)
        if frame.camera_hw != self.camera_hw:
            raise EngineError(f"frame was prepared for {_size(frame.camera_hw)}, this certifier "
                              f"certifies {_size(self.camera_hw)}")
        start = time.perf_counter()
        result = self.certifier.certify(frame.prepared, cancel=cancel)
        alarm = None
        if with_alarm:
            outcome = self.alarm.evaluate(result.branch_labels, result.labels, stamp)
            alarm = outcome if self.plan.resizer is None else self._camera_alarm(outcome)
        certified = time.perf_counter()
        timings = {**result.timings, **frame.timings}
        resizer = self.plan.resizer
        labels, certificate = result.labels, result.certified
        if resizer is not None:
            labels = resizer.upscale_labels(result.labels).astype(result.labels.dtype, copy=False)
            certificate = resizer.upscale_labels(result.certified.astype(np.uint8)).astype(bool)
            timings["upscale"] = time.perf_counter() - certified
        timings["total"] = time.perf_counter() - start + sum(frame.timings.values())
        return CertificationResult(labels=labels, certified=certificate, branch_labels=result.branch_labels,
                                   mode=result.mode, timings=timings), alarm

    def _camera_alarm(self, outcome: AlarmOutcome) -> AlarmOutcome:
        """The suspected patch scaled from working to camera pixels (covering, clipped)."""
        if outcome.roi is None:
            return outcome
        (camera_h, camera_w), (work_h, work_w) = self.plan.camera_hw, self.plan.working_hw
        y, x, height, width = outcome.roi
        top, left = y * camera_h // work_h, x * camera_w // work_w
        bottom = min(camera_h, -(-(y + height) * camera_h // work_h))
        right = min(camera_w, -(-(x + width) * camera_w // work_w))
        return replace(outcome, roi=(top, left, bottom - top, right - left))


def load_alarm_calibrations(config: NodeConfig) -> dict[str, AlarmCalibration]:
    """The calibrations named by ``alarm_calibration``: 'default' (shipped; none if absent), a
    path (NodeConfigError when unreadable), or '' (none). Entries made with other model files than
    the node's (their ``models_sha256``) are dropped with a warning: a retrained model is not judged
    by its predecessor's threshold, its ``alert`` falls back to "some pixel uncertified"."""
    from demasked_ros.engines.factory import MODELS_DIR, model_fingerprint

    name = config.alarm_calibration
    if not name:
        return {}
    path = MODELS_DIR / "alarm_calibration.json" if name == "default" else Path(name)
    if name == "default" and not path.is_file():
        return {}
    try:
        calibrations = load_calibrations(path)
    except CoreError as error:
        raise NodeConfigError(f"alarm_calibration: {error}") from error
    fingerprint = model_fingerprint(config.segmenter_plugin or config.segmenter_model or "default",
                                    config.demasker)
    stale = sorted(key for key, entry in calibrations.items() if not entry.made_for(fingerprint))
    if stale:
        _log.warning("alarm_calibration %s: ignoring %s, made with other model files than this node's "
                     "(recalibrate with demasked-calibrate)", path, ", ".join(stale))
    return {key: entry for key, entry in calibrations.items() if key not in stale}


def describe_alarm(alarm: PatchAlarm) -> str:
    """What ``alert`` means for this alarm, for /diagnostics: the calibration in use, or none."""
    calibration = alarm.calibration
    if calibration is None:
        return "uncalibrated (alert = some pixel uncertified)"
    text = f"calibrated {calibration.key}: threshold {calibration.threshold:.3f}"
    if calibration.temporal is not None:
        text += (f", persistent {calibration.temporal.threshold:.3f} "
                 f"(window {calibration.temporal.params.window})")
    return text


def models_key(config: NodeConfig) -> str:
    """The models part of a calibration key: 'default' for the packaged models, else their names."""
    return calibration_models(config.segmenter_plugin or config.segmenter_model, config.demasker)


@dataclass(frozen=True)
class CameraFrame:
    """A camera frame made ready by :meth:`FrameCertifier.prepare`: at the working size, checked
    and staged; ``timings`` holds the preparation's seconds (``stage``, ``resize``)."""

    prepared: PreparedImage
    camera_hw: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)


def build_frame_certifier(config: NodeConfig, models: LoadedModels, height: int,
                          width: int) -> FrameCertifier:
    """The node's certifier for ``height x width`` camera frames under ``config``.

    Raises:
        NodeConfigError: see :func:`plan_masks`.
        EngineError: masks the Certifier refuses as unsound.
    """
    plan = plan_masks(config, height, width)
    certifier = Certifier(models.segmenter, models.demasker, plan.masks, chunk_size=models.chunk_size,
                          executor=models.executor, memory_budget=config.memory_budget_bytes)
    alarm = PatchAlarm.from_calibrations(plan.masks, load_alarm_calibrations(config), models_key(config))
    return FrameCertifier(plan, certifier, alarm)


class CertifierCache:
    """The :class:`FrameCertifier` of the last ``size`` camera sizes, most recently used last.

    Why: a stream that alternates sizes (two cameras on one topic, a fuzzer) rebuilt the masks on
    every change and logged each rebuild. :attr:`built` counts the builds (for diagnostics).
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.built = 0
        self._items: OrderedDict[tuple[int, int], FrameCertifier] = OrderedDict()

    def get(self, height: int, width: int) -> FrameCertifier | None:
        """The cached certifier for this camera size (marked most recent), or None."""
        certifier = self._items.get((height, width))
        if certifier is not None:
            self._items.move_to_end((height, width))
        return certifier

    def put(self, certifier: FrameCertifier) -> None:
        """Remember a newly built certifier, dropping the least recently used beyond :attr:`size`."""
        self.built += 1
        self._items[certifier.camera_hw] = certifier
        self._items.move_to_end(certifier.camera_hw)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every certifier."""
        self._items.clear()


def _size(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"
