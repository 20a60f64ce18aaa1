"""The node's parameters: one table of names, defaults, ranges and descriptions, and its validation.

Why one table: the same list declares the ROS parameters (with descriptors and ranges, so
``ros2 param describe`` documents them), renders the documented YAML defaults file, and validates
a set of values into a frozen :class:`NodeConfig`. Values are only read and checked at configure
time, so a bad value fails ``configure`` with a clear message instead of crashing the process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from demasked_ros.core.classes import CAMVID
from demasked_ros.core.errors import CoreError
from demasked_ros.core.masks import DETECTION_AXES, RECOVERY_T
from demasked_ros.core.spec import MODES, RESIZE_INTERPOLATIONS, CertSpec
from demasked_ros.core.threat import PatchSpec
from demasked_ros.engines.certifier import BATCH_PROBE_POLICIES
from demasked_ros.engines.factory import DEMASKER_NAMES, EXECUTOR_NAMES, SegmenterSpec
from demasked_ros.rosio.topics import INPUT_QOS, OUTPUT_QOS, TRANSPORTS

CHANNEL_ORDERS = ("RGB", "BGR")


class NodeConfigError(ValueError):
    """The node's single error type: an invalid parameter value or a model that cannot be set up."""


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: name, default (fixes the type), description, and its allowed values.

    ``low``/``high`` give an inclusive numeric range (declared as a ROS descriptor range);
    ``choices`` lists the allowed strings.
    """

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    array_type: str | None = None  # "string" or "double" for array parameters


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("mode", "recovery", "Certification mode: recovery (majority vote, certified where all K "
              "agree) or detection (f(x), verified where every branch equals f(x)).", choices=MODES),
    ParamSpec("scheme", "column", "Mask scheme. Recovery: column, row, 3-mask, 4-mask. Detection: "
              "column, row, block.", choices=tuple(sorted(set(RECOVERY_T) | set(DETECTION_AXES)))),
    ParamSpec("patch_fraction", 0.005, "Patch size as a fraction of the image area (square patch). "
              "Used when patch_height/patch_width are 0.", low=1e-6, high=1.0),
    ParamSpec("patch_height", 0, "Patch height in pixels (0: use patch_fraction).", low=0, high=65535),
    ParamSpec("patch_width", 0, "Patch width in pixels (0: use patch_fraction).", low=0, high=65535),
    ParamSpec("n_patches", 1, "Number of independent patches certified against (recovery only).",
              low=1, high=16),
    ParamSpec("k", 0, "Number of masks K (0: the smallest sound value; recovery 2*N*T+1, detection "
              "from the band width).", low=0, high=4096),
    ParamSpec("band_width", 0, "Detection band width in pixels of the working resolution (0: twice "
              "the patch side; give k or band_width, not both).", low=0, high=65535),
    ParamSpec("segmenter_model", "", "Path of an ONNX segmentation model ('' : the packaged default "
              "CamVid segmenter).", ),
    ParamSpec("segmenter_plugin", "", "Python factory 'module:function' returning a Segmenter "
              "(overrides segmenter_model; for custom backends).", ),
    ParamSpec("class_names", [], "Class names of segmenter_model (index = label; empty: CamVid's 11).",
              array_type="string"),
    ParamSpec("input_height", 0, "Height the ONNX model expects (0: feed frames at their own size).",
              low=0, high=65535),
    ParamSpec("input_width", 0, "Width the ONNX model expects (0: feed frames at their own size).",
              low=0, high=65535),
    ParamSpec("mean", [123.675, 116.28, 103.53], "Per-channel mean (0-255 units, model channel order).",
              array_type="double"),
    ParamSpec("std", [58.395, 57.12, 57.375], "Per-channel std (0-255 units, model channel order).",
              array_type="double"),
    ParamSpec("channel_order", "RGB", "Channel order the ONNX model was trained with.",
              choices=CHANNEL_ORDERS),
    ParamSpec("demasker", "default", "Demasker: telea, ns, solid (no demasking), learned, or default "
              "(learned when installed, else telea).", choices=DEMASKER_NAMES),
    ParamSpec("providers", ["CPUExecutionProvider"], "ONNX Runtime execution providers in priority "
              "order (cpu, cuda, tensorrt or full names); a requested one that is not active is an "
              "error.", array_type="string"),
    ParamSpec("executor", "auto", "Branch executor: cpu (chunked), cuda (parallel CUDA streams), auto "
              "(cuda when available, else cpu; cuda falls back to cpu with a warning).",
              choices=EXECUTOR_NAMES),
    ParamSpec("chunk_size", 0, "Branches per batch (0: all K at once on the CPU, K/streams on the GPU).",
              low=0, high=4096),
    ParamSpec("streams", 2, "CUDA streams the K branches are spread over (GPU executor only).", low=1,
              high=64),
    ParamSpec("pipeline", True, "Prepare frame t+1 (decode, resize, host-to-device copy) on a second "
              "thread while frame t is certified; keep-latest and fail-closed rules are the same "
              "(false: one thread does both in turn)."),
    ParamSpec("threads", 2, "CPU threads for inference and OpenCV (fixed for determinism).", low=1,
              high=256),
    ParamSpec("input_transport", "raw", "raw: sensor_msgs/Image on 'image'; compressed: "
              "sensor_msgs/CompressedImage on 'image/compressed'.", choices=TRANSPORTS),
    ParamSpec("input_qos", "sensor_data", "Input QoS: sensor_data (best effort), best_effort or "
              "reliable.", choices=INPUT_QOS),
    ParamSpec("input_qos_depth", 1, "Input queue depth (the worker keeps only the newest frame).",
              low=1, high=1000),
    ParamSpec("output_qos", "reliable", "Output QoS reliability.", choices=OUTPUT_QOS),
    ParamSpec("output_qos_depth", 5, "Output queue depth.", low=1, high=1000),
    ParamSpec("expected_height", 0, "Frame height to build masks for at configure (0: first frame). "
              "A frame of another size rebuilds the masks.", low=0, high=65535),
    ParamSpec("expected_width", 0, "Frame width to build masks for at configure (0: first frame).",
              low=0, high=65535),
    ParamSpec("working_height", 0, "Height frames are resized to BEFORE masking (0: certify at the "
              "camera resolution; only one of working_height/working_width set keeps the aspect ratio). "
              "The patch is widened to the resize's footprint, so certificates hold for the original "
              "patch on the original frame.", low=0, high=65535),
    ParamSpec("working_width", 0, "Width frames are resized to before masking (0: see working_height).",
              low=0, high=65535),
    ParamSpec("resize_interpolation", "area", "OpenCV interpolation of the resize to the working size "
              "(area is best for downscaling; only with working_height/working_width).",
              choices=RESIZE_INTERPOLATIONS),
    ParamSpec("working_max_pixels", 480 * 360, "Automatic working resolution: a frame with more pixels "
              "is resized (aspect kept) to at most this many BEFORE masking, with the patch widened "
              "as for working_height/working_width (which override it). 0 turns it off. See docs/ROS.md "
              "for the measured trade-off.", low=0, high=1 << 30),
    ParamSpec("memory_budget", 1.5, "GB for one frame's working set (masked and demasked copies, labels, "
              "model activations); the CPU executor runs as many branches per batch as fit, at least 1.",
              low=0.01, high=4096.0),
    ParamSpec("batch_probe", "fallback", "At configure, probe the models for batch independence (a branch "
              "must not depend on its batch-mates): refuse batch-dependent models, fall back to one branch "
              "per call (logged, in diagnostics), or off.", choices=BATCH_PROBE_POLICIES),
    ParamSpec("max_image_pixels", 3840 * 2160, "Frames with more pixels are rejected.", low=1,
              high=1 << 30),
    ParamSpec("publish_overlay", True, "Publish the RViz colour overlay on ~/overlay."),
    ParamSpec("overlay_alpha", 0.5, "Opacity of class colours in the overlay.", low=0.0, high=1.0),
    ParamSpec("min_alert_region_area", 100, "Smallest connected uncertified region (pixels) reported "
              "as an alert region.", low=1, high=1 << 30),
    ParamSpec("max_alert_regions", 32, "Most alert regions per message (largest first).", low=0,
              high=10000),
    ParamSpec("alert_region_open_radius", 2, "Opening radius (pixels) that removes thin class-boundary "
              "bands before alert regions are formed (0: none).", low=0, high=100),
    ParamSpec("alert_region_max_fraction", 0.1, "A region whose box would exceed this fraction of the "
              "frame is reported as coarse grid cells instead (1: never split).", low=0.001, high=1.0),
    ParamSpec("alarm_calibration", "default", "Patch-alarm calibration file (demasked-calibrate): "
              "'default' (the one shipped for the default models), a path, or '' (no calibrated alarm: "
              "alert = some pixel uncertified). Entries made with other model files than the node's are "
              "ignored (logged). The alarm is empirical, not certified."),
    ParamSpec("frame_timeout", 5.0, "Seconds a frame may take; later, the frame fails closed with "
              "ERROR_TIMEOUT.", low=0.01, high=3600.0),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", low=0.05,
              high=3600.0),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeConfig:
    """Validated node settings (see :data:`PARAMETERS` for the meaning of each field)."""

    spec: CertSpec
    segmenter_model: str
    segmenter_plugin: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str
    demasker: str
    providers: tuple[str, ...]
    executor: str
    chunk_size: int | None
    streams: int
    pipeline: bool
    threads: int
    input_transport: str
    input_qos: str
    input_qos_depth: int
    output_qos: str
    output_qos_depth: int
    expected_size: tuple[int, int] | None
    working_max_pixels: int
    memory_budget: float
    batch_probe: str
    max_image_pixels: int
    publish_overlay: bool
    overlay_alpha: float
    min_alert_region_area: int
    max_alert_regions: int
    alert_region_open_radius: int
    alert_region_max_fraction: float
    alarm_calibration: str
    frame_timeout: float
    diagnostics_period: float

    # The threat model and masks are the spec's; these read it for logs, tests and diagnostics.
    mode = property(lambda self: self.spec.mode, doc="Certification mode (the spec's).")
    scheme = property(lambda self: self.spec.scheme, doc="Mask scheme (the spec's).")
    patch = property(lambda self: self.spec.patch, doc="Patch at the camera size (the spec's).")
    k = property(lambda self: self.spec.k, doc="Number of masks, None = smallest sound (the spec's).")
    working_size = property(lambda self: self.spec.working_size, doc="Requested working size.")
    resize_interpolation = property(lambda self: self.spec.interpolation, doc="Working-size resize.")

    def segmenter_spec(self, device: str = "cpu") -> SegmenterSpec:
        """What :func:`~demasked_ros.engines.factory.make_segmenter` builds for this node on ``device``."""
        return SegmenterSpec(
            name=self.segmenter_plugin or self.segmenter_model or "default",
            class_names=self.class_names or CAMVID.names, input_size=self.input_size, mean=self.mean,
            std=self.std, channel_order=self.channel_order, providers=self.providers, threads=self.threads,
            device=device)

    @property
    def memory_budget_bytes(self) -> int:
        """:attr:`memory_budget` (GB) in bytes, for the executor."""
        return int(self.memory_budget * 1e9)

    def describe(self) -> str:
        """One line for logs."""
        size = "first frame" if self.expected_size is None else "x".join(map(str, self.expected_size))
        return (f"{self.spec.describe()} demasker={self.demasker} executor={self.executor} size={size}")


def _check_type(spec: ParamSpec, value: Any) -> Any:
    default = spec.default
    if spec.array_type is not None:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise NodeConfigError(f"parameter {spec.name!r} must be a list of {spec.array_type}s, "
                                  f"got {value!r}")
        items = list(value)
        if spec.array_type == "string" and not all(isinstance(v, str) for v in items):
            raise NodeConfigError(f"parameter {spec.name!r} must be a list of strings, got {value!r}")
        if spec.array_type == "double":
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
                raise NodeConfigError(f"parameter {spec.name!r} must be a list of numbers, got {value!r}")
            items = [float(v) for v in items]
        return items
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise NodeConfigError(f"parameter {spec.name!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise NodeConfigError(f"parameter {spec.name!r} must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise NodeConfigError(f"parameter {spec.name!r} must be a number, got {value!r}")
        value = float(value)
    elif isinstance(default, str) and not isinstance(value, str):
        raise NodeConfigError(f"parameter {spec.name!r} must be a string, got {value!r} "
                              "(quote numbers: -p name:=\"'5'\")")
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise NodeConfigError(f"parameter {spec.name!r} = {value!r} is outside [{spec.low}, {spec.high}]")
    if spec.choices is not None and value not in spec.choices:
        raise NodeConfigError(f"parameter {spec.name!r} = {value!r} is not one of {list(spec.choices)}")
    return value


def config_from_values(values: Mapping[str, Any]) -> NodeConfig:
    """Validate parameter values (missing ones take their defaults) into a :class:`NodeConfig`.

    Raises:
        NodeConfigError: naming the parameter, the bad value and what is allowed.
    """
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise NodeConfigError(f"unknown parameters {unknown}")
    v = {name: _check_type(spec, values.get(name, spec.default)) for name, spec in SPECS.items()}
    if (v["patch_height"] == 0) != (v["patch_width"] == 0):
        raise NodeConfigError("give both patch_height and patch_width in pixels, or neither "
                              "(then patch_fraction applies)")
    patch: PatchSpec = ((v["patch_height"], v["patch_width"]) if v["patch_height"]
                        else v["patch_fraction"])
    if (v["input_height"] == 0) != (v["input_width"] == 0):
        raise NodeConfigError("give both input_height and input_width, or neither")
    if (v["expected_height"] == 0) != (v["expected_width"] == 0):
        raise NodeConfigError("give both expected_height and expected_width, or neither")
    if len(v["mean"]) != 3 or len(v["std"]) != 3 or any(s <= 0 for s in v["std"]):
        raise NodeConfigError("mean and std need 3 values each, std positive")
    if not v["providers"]:
        raise NodeConfigError("providers must name at least one execution provider")
    if v["segmenter_plugin"] and ":" not in v["segmenter_plugin"]:
        raise NodeConfigError(f"segmenter_plugin {v['segmenter_plugin']!r} must look like 'module:function'")
    expected = (v["expected_height"], v["expected_width"]) if v["expected_height"] else None
    working = ((v["working_height"], v["working_width"]) if v["working_height"] or v["working_width"]
               else None)
    if working is None and not v["working_max_pixels"] and \
            v["resize_interpolation"] != SPECS["resize_interpolation"].default:
        raise NodeConfigError(f"resize_interpolation = {v['resize_interpolation']!r} has no effect "
                              "without working_height/working_width or working_max_pixels")
    if expected is not None and expected[0] * expected[1] > v["max_image_pixels"]:
        raise NodeConfigError(f"expected size {expected[0]}x{expected[1]} exceeds max_image_pixels")
    try:
        spec = CertSpec(mode=v["mode"], scheme=v["scheme"], patch=patch, n_patches=v["n_patches"],
                        k=v["k"] or None, band_width=v["band_width"] or None, working_size=working,
                        interpolation=v["resize_interpolation"])
        if expected is not None:
            spec.check_frame(*expected)
    except CoreError as error:
        raise NodeConfigError(str(error)) from error
    return NodeConfig(
        spec=spec, segmenter_model=v["segmenter_model"],
        segmenter_plugin=v["segmenter_plugin"], class_names=tuple(v["class_names"]),
        input_size=(v["input_height"], v["input_width"]) if v["input_height"] else None,
        mean=tuple(v["mean"]), std=tuple(v["std"]), channel_order=v["channel_order"],
        demasker=v["demasker"], providers=tuple(v["providers"]), executor=v["executor"],
        chunk_size=v["chunk_size"] or None, streams=v["streams"], pipeline=v["pipeline"],
        threads=v["threads"],
        input_transport=v["input_transport"],
        input_qos=v["input_qos"], input_qos_depth=v["input_qos_depth"], output_qos=v["output_qos"],
        output_qos_depth=v["output_qos_depth"], expected_size=expected,
        working_max_pixels=v["working_max_pixels"], memory_budget=v["memory_budget"],
        batch_probe=v["batch_probe"], max_image_pixels=v["max_image_pixels"],
        publish_overlay=v["publish_overlay"],
        overlay_alpha=v["overlay_alpha"], min_alert_region_area=v["min_alert_region_area"],
        max_alert_regions=v["max_alert_regions"], frame_timeout=v["frame_timeout"],
        alert_region_open_radius=v["alert_region_open_radius"],
        alert_region_max_fraction=v["alert_region_max_fraction"], alarm_calibration=v["alarm_calibration"],
        diagnostics_period=v["diagnostics_period"],
    )


def defaults_yaml(node_name: str = "demasked_ros") -> str:
    """The documented parameters file (``--ros-args --params-file``) with every default."""
    lines = [f"{node_name}:", "  ros__parameters:"]
    for spec in PARAMETERS:
        allowed = ""
        if spec.choices:
            allowed = f" [{' | '.join(spec.choices)}]"
        elif spec.low is not None:
            allowed = f" [{spec.low:g} .. {spec.high:g}]"
        lines.append(f"    # {spec.description}{allowed}")
        lines.append(f"    {spec.name}: {_yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return repr(value)
