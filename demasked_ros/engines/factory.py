"""The one model factory: segmenters, demaskers and branch executors by name, for every app.

Why: the node, the evaluator and ``demasked-certify`` must accept the same choices and load them
the same way. :func:`make_segmenter` turns a :class:`SegmenterSpec` (the packaged default, an ONNX
file, a TorchScript / ``torch.export`` file, or a plugin ``module:function``) into a
:class:`Segmenter`; :func:`make_demasker` does the same for demaskers by name;
:func:`make_executor` picks the branch executor with a clean CPU fallback. :data:`MODELS_DIR` is
the one place the packaged model files are found.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from demasked_ros.engines.certifier import BranchExecutor
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.protocols import Demasker, Segmenter
from demasked_ros.engines.segmenters import IMAGENET_MEAN, IMAGENET_STD

#: Folder of the packaged model files.
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
#: The default CamVid segmenter (see SEGMENTER_MODEL_CARD.md).
DEFAULT_SEGMENTER_PATH = MODELS_DIR / "segmenter.onnx"
#: The packaged learned demasker (see DEMASKER_MODEL_CARD.md).
DEFAULT_DEMASKER_PATH = MODELS_DIR / "demasker.onnx"
#: Names accepted by :func:`make_demasker`.
DEMASKER_NAMES = ("telea", "ns", "solid", "learned", "default")
#: Branch executors :func:`make_executor` accepts.
EXECUTOR_NAMES = ("auto", "cpu", "cuda")
#: Files :func:`make_segmenter` loads with :class:`~demasked_ros.engines.torch_backend.TorchSegmenter`.
TORCH_SUFFIXES = (".pt", ".ts", ".pt2")


@dataclass(frozen=True)
class SegmenterSpec:
    """Which segmenter to build and how.

    Attributes:
        name: ``default`` (the packaged CamVid model), a path to an ``.onnx`` file, a TorchScript /
            ``torch.export`` file (``.pt``, ``.ts``, ``.pt2``), or a plugin ``module:function``
            returning a Segmenter.
        class_names: the model's classes (index = label); a file model needs them.
        input_size, mean, std, channel_order: preprocessing of a file model.
        providers: ONNX Runtime providers (short names allowed); threads: intra-op threads.
        device: torch device for the packaged default (its torch twin when not ``cpu``) and for
            TorchScript / ``torch.export`` files; ONNX models follow ``providers`` instead.
    """

    name: str = "default"
    class_names: tuple[str, ...] = ()
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channel_order: str = "RGB"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 2
    device: str = "cpu"

    @property
    def is_plugin(self) -> bool:
        """A ``module:function`` factory rather than a model file."""
        return ":" in self.name and not self.name.endswith((".onnx", *TORCH_SUFFIXES))

    @property
    def model_path(self) -> Path | None:
        """The model file behind this spec (None for a plugin)."""
        if self.name == "default":
            return DEFAULT_SEGMENTER_PATH
        return None if self.is_plugin else Path(self.name)


def make_segmenter(spec: SegmenterSpec) -> Segmenter:
    """The segmenter ``spec`` names.

    Raises:
        EngineError: an unknown name, a missing file, a file model without class names, a plugin
            that cannot be imported or returns no Segmenter, or an inactive provider.
    """
    if spec.is_plugin:
        return _plugin_segmenter(spec.name)
    from demasked_ros.engines.onnx_providers import resolve_providers

    if spec.name == "default":
        from demasked_ros.engines.defaults import default_segmenter

        if spec.device != "cpu":  # the torch twin: same weights, runs on the executor's device
            return default_segmenter(threads=spec.threads, backend="torch", device=spec.device)
        return default_segmenter(providers=spec.providers, threads=spec.threads)
    if not spec.class_names:
        raise EngineError(f"{spec.name}: class names are unknown (give the model's class names)")
    if spec.name.endswith(".onnx"):
        from demasked_ros.engines.segmenters import OnnxSegmenter

        return cast(Segmenter, OnnxSegmenter(
            spec.name, class_names=spec.class_names, input_size=spec.input_size, mean=spec.mean,
            std=spec.std, channel_order=spec.channel_order,
            providers=resolve_providers(list(spec.providers)), intra_op_threads=spec.threads))
    if spec.name.endswith(TORCH_SUFFIXES):
        from demasked_ros.engines.torch_backend import TorchSegmenter

        return cast(Segmenter, TorchSegmenter(
            spec.name, class_names=spec.class_names, input_size=spec.input_size, mean=spec.mean,
            std=spec.std, channel_order=spec.channel_order, threads=spec.threads, device=spec.device))
    raise EngineError(f"unknown segmenter {spec.name!r}: use 'default', a .onnx / .pt / .ts / .pt2 "
                      "file or a plugin 'module:function'")


def _plugin_segmenter(reference: str) -> Segmenter:
    module_name, _, attribute = reference.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise EngineError(f"segmenter_plugin {reference!r}: {error}") from error
    segmenter = factory()
    if not isinstance(segmenter, Segmenter):
        raise EngineError(f"segmenter_plugin {reference!r} returned {type(segmenter).__name__}, "
                          "not a Segmenter")
    return segmenter


def make_demasker(name: str, threads: int = 2, device: str = "cpu") -> Demasker:
    """A demasker by name: ``telea``, ``ns``, ``solid`` (no demasking), ``learned`` or ``default``.

    ``default`` is the packaged learned demasker when its weights are installed, else TELEA. With
    a ``device`` other than ``cpu``, ``learned`` and ``default`` are its torch twin on that device;
    the classical demaskers always run on CPU threads.
    """
    if name in ("learned", "default") and device != "cpu":
        from demasked_ros.engines.defaults import default_demasker

        return default_demasker(threads=threads, backend="torch", device=device)
    from demasked_ros.engines import demaskers

    if name == "telea":
        return demaskers.TeleaDemasker()
    if name == "ns":
        return demaskers.NavierStokesDemasker()
    if name == "solid":
        return demaskers.SolidFillDemasker()
    if name == "learned":
        from demasked_ros.engines.learned_demasker import default_learned_demasker

        return default_learned_demasker(threads=threads)
    if name == "default":
        from demasked_ros.engines.defaults import default_demasker

        return default_demasker()
    raise EngineError(f"unknown demasker {name!r}; choose one of {list(DEMASKER_NAMES)}")


def calibration_models(segmenter: str = "default", demasker: str = "default") -> str:
    """The models part of an alarm calibration key (:func:`demasked_ros.core.alarm.calibration_key`):
    ``default`` for the packaged models, else ``<segmenter>+<demasker>`` with the segmenter file's stem
    or the plugin's ``module:function``.

    One function for ``demasked-calibrate``, ``demasked-attack`` and the node, so that a threshold is
    found by exactly the runs of the models it was fitted on (and by no other).
    """
    spec = SegmenterSpec(name=segmenter or "default")
    if spec.name == "default" and demasker in ("default", "learned"):
        return "default"
    return f"{spec.name if spec.is_plugin else Path(spec.name).stem}+{demasker}"


def model_fingerprint(segmenter: str = "default", demasker: str = "default") -> dict[str, str]:
    """What an alarm calibration records of the models it was made with (and the node checks):
    the SHA-256 of the segmenter file (none for a plugin) and of the learned demasker's file, or the
    classical demasker's name. ``segmenter``: 'default' / '' or a model path; ``demasker``: a name
    of :data:`DEMASKER_NAMES`."""
    fingerprint: dict[str, str] = {}
    spec = SegmenterSpec(name=segmenter or "default")
    if spec.model_path is not None and spec.model_path.is_file():
        fingerprint["segmenter"] = _file_sha256(spec.model_path)
    learned = demasker in ("learned", "default") and DEFAULT_DEMASKER_PATH.is_file()
    fingerprint["demasker"] = _file_sha256(DEFAULT_DEMASKER_PATH) if learned else demasker
    return fingerprint


@functools.lru_cache(maxsize=16)
def _file_sha256_cached(path: Path, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_sha256(path: Path) -> str:
    """SHA-256 of a model file, cached while its size and mtime stay the same."""
    resolved = path.resolve()
    stat = resolved.stat()
    return _file_sha256_cached(resolved, stat.st_size, stat.st_mtime_ns)


def gpu_device(executor: str) -> tuple[str, str | None]:
    """The device to build models on for ``executor`` and, when it is ``cpu``, why.

    ``cuda`` and ``auto`` get ``"cuda"`` when torch sees a GPU; otherwise ``"cpu"`` and the reason
    (torch missing, CPU-only build, no device). ``cpu`` gets ``("cpu", None)``.
    """
    if executor not in EXECUTOR_NAMES:
        raise EngineError(f"unknown executor {executor!r}; choose one of {list(EXECUTOR_NAMES)}")
    if executor == "cpu":
        return "cpu", None
    if executor == "auto" and not _torch_imported() and not _gpu_driver_present():
        # importing torch costs seconds at every configure; without a GPU driver it cannot help
        return "cpu", "no NVIDIA GPU driver found"
    try:
        import torch
    except ImportError:
        return "cpu", "torch is not installed"
    if not torch.cuda.is_available():
        return "cpu", "torch sees no CUDA device (CPU-only torch build or no GPU)"
    return "cuda", None


def _torch_imported() -> bool:
    return "torch" in sys.modules


def _gpu_driver_present() -> bool:
    """A cheap look for an NVIDIA driver (desktop/server GPUs or Jetson) before importing torch."""
    return (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()
            or Path("/dev/nvhost-gpu").exists() or Path("/etc/nv_tegra_release").exists())


def make_executor(name: str, chunk_size: int | None = None, log: Any = None,
                  segmenter: Segmenter | None = None, demasker: Demasker | None = None,
                  streams: int = 2) -> tuple[BranchExecutor | None, str]:
    """The branch executor ``name`` asks for and its name for diagnostics.

    None means the Certifier's own chunked CPU executor. ``cuda`` / ``auto`` give a
    :class:`~demasked_ros.engines.cuda_executor.CudaStreamExecutor` with ``streams`` streams on
    the segmenter's device when torch sees a GPU and the engines can run there (a segmenter with a
    device tensor path; see :func:`gpu_device` and ``cuda_unavailable_reason``); otherwise the CPU
    executor, with a warning on ``log`` for ``cuda`` (``auto`` quietly) and the reason in the name.
    """
    device, reason = gpu_device(name)
    log = log or logging.getLogger(__name__)
    cpu_name = f"cpu-chunked(chunk_size={chunk_size or 'K'})"
    if name == "cpu":
        return None, cpu_name
    if reason is None and segmenter is None:
        reason = "no engines were built for the GPU"
    if reason is None:
        from demasked_ros.engines.cuda_executor import CudaStreamExecutor, cuda_unavailable_reason

        reason = cuda_unavailable_reason(segmenter, demasker, str(getattr(segmenter, "device", device)))
        if reason is None:
            executor = CudaStreamExecutor(device=getattr(segmenter, "device", device), streams=streams,
                                          chunk_size=chunk_size)
            return executor, f"cuda-streams(streams={streams}, chunk_size={chunk_size or 'K/S'})"
    if name == "cuda":
        log.warning(f"executor=cuda requested but {reason}; falling back to the CPU executor")
    return None, cpu_name + f" [cuda unavailable: {reason}]"


def executor_info(executor: BranchExecutor | None) -> dict[str, str]:
    """Diagnostics of a branch executor: ``executor``, ``device`` and ``streams``."""
    describe = getattr(executor, "describe", None)
    if callable(describe):
        return {key: str(value) for key, value in describe().items()}
    return {"executor": "cpu-chunked", "device": "cpu", "streams": "0"}


def providers_of(segmenter: Segmenter) -> tuple[str, ...]:
    """The execution providers a segmenter reports (``python`` for one that has none)."""
    return tuple(getattr(segmenter, "providers", ()) or ("python",))

