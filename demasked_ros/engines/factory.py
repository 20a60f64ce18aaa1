"""The one model factory: segmenters, demaskers and branch executors by name, for every app.

Why: the node, the evaluator and ``demasked-certify`` must accept the same choices and load them
the same way. :func:`make_segmenter` turns a :class:`SegmenterSpec` (the packaged default, an ONNX
file, a TorchScript / ``torch.export`` file, or a plugin ``module:function``) into a
:class:`Segmenter`; :func:`make_demasker` does the same for demaskers by name;
:func:`make_executor` picks the branch executor with a clean CPU fallback. :data:`MODELS_DIR` is
the one place the packaged model files are found.
"""

from __future__ import annotations

import importlib
import logging
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
    """

    name: str = "default"
    class_names: tuple[str, ...] = ()
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channel_order: str = "RGB"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 2

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

        return cast(Segmenter, default_segmenter(providers=spec.providers, threads=spec.threads))
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
            std=spec.std, channel_order=spec.channel_order, threads=spec.threads))
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


def make_demasker(name: str, threads: int = 2) -> Demasker:
    """A demasker by name: ``telea``, ``ns``, ``solid`` (no demasking), ``learned`` or ``default``.

    ``default`` is the packaged learned demasker when its weights are installed, else TELEA.
    """
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


def make_executor(name: str, chunk_size: int | None = None,
                  log: Any = None) -> tuple[BranchExecutor | None, str]:
    """The branch executor ``name`` asks for and its name for diagnostics.

    None means the Certifier's own chunked CPU executor. ``cuda`` without a usable GPU executor
    (``demasked_ros.engines.cuda_executor.CudaStreamExecutor``) falls back to the CPU with a
    warning on ``log``, ``auto`` quietly.
    """
    if name not in EXECUTOR_NAMES:
        raise EngineError(f"unknown executor {name!r}; choose one of {list(EXECUTOR_NAMES)}")
    log = log or logging.getLogger(__name__)
    cpu_name = f"cpu-chunked(chunk_size={chunk_size or 'K'})"
    if name == "cpu":
        return None, cpu_name
    reason = _cuda_unavailable_reason()
    if reason is None:
        try:
            module = importlib.import_module("demasked_ros.engines.cuda_executor")
            return module.CudaStreamExecutor(chunk_size=chunk_size), "cuda-streams"
        except (ImportError, AttributeError, EngineError) as error:
            reason = f"no CUDA stream executor in this build ({error})"
    if name == "cuda":
        log.warning(f"executor=cuda requested but {reason}; falling back to the CPU executor")
    return None, cpu_name + f" [cuda unavailable: {reason}]"


def _cuda_unavailable_reason() -> str | None:
    from demasked_ros.engines.onnx_providers import available_providers

    if "CUDAExecutionProvider" not in available_providers():
        return "onnxruntime has no CUDA provider (CPU-only build)"
    try:
        import torch  # only where a GPU build of onnxruntime suggests a GPU machine
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


def providers_of(segmenter: Segmenter) -> tuple[str, ...]:
    """The execution providers a segmenter reports (``python`` for one that has none)."""
    return tuple(getattr(segmenter, "providers", ()) or ("python",))

