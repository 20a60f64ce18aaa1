"""Turn a validated :class:`NodeConfig` into models, a branch executor and mask sets.

Kept apart from the node so that everything here runs without rclpy: the same choices (plugin,
ONNX path or packaged default; demasker by name; CPU/GPU executor with a clean CPU fallback)
can be tested and reused by the demo and the benchmark.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from demasked_ros.apps.node.params import NodeConfig, NodeConfigError
from demasked_ros.core.classes import CAMVID, ClassInfo
from demasked_ros.core.errors import CoreError
from demasked_ros.core.masks import MaskSet, detection_masks, recovery_masks
from demasked_ros.engines.certifier import BranchExecutor
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.protocols import Demasker, Segmenter


@dataclass
class LoadedModels:
    """What one configure produced: models, executor and the metadata published about them."""

    segmenter: Segmenter
    demasker: Demasker
    executor: BranchExecutor | None
    class_info: ClassInfo
    ignore_index: int
    model_name: str
    providers: tuple[str, ...]
    demasker_name: str
    executor_name: str

    def describe(self) -> str:
        """One line for logs."""
        return (f"model={self.model_name} providers={list(self.providers)} demasker={self.demasker_name} "
                f"executor={self.executor_name} classes={len(self.class_info.names)}")

    def key_values(self) -> list[tuple[str, str]]:
        """Diagnostics entries."""
        return [("model", self.model_name), ("providers", ",".join(self.providers)),
                ("demasker", self.demasker_name), ("executor", self.executor_name)]


def palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """``count`` distinct, deterministic RGB colours for label sets without their own colours."""
    rng = np.random.default_rng(20240601)
    colors = rng.integers(40, 256, size=(count, 3))
    return tuple((int(r), int(g), int(b)) for r, g, b in colors)


def class_info_for(names: tuple[str, ...]) -> tuple[ClassInfo, int]:
    """ClassInfo (names + colours) and ignore index for a segmenter's class names."""
    if tuple(names) == CAMVID.names:
        return CAMVID, CAMVID.ignore_index
    return ClassInfo(names=tuple(names), colors=palette(len(names)), ignore_index=-1), -1


def load_models(config: NodeConfig, logger: Any = None) -> LoadedModels:
    """Build the segmenter, demasker and executor ``config`` asks for.

    Raises:
        NodeConfigError: a plugin that cannot be imported or returns no Segmenter.
        EngineError: a model that cannot be loaded (missing file, inactive provider).
    """
    log = logger or logging.getLogger(__name__)
    segmenter, model_name = _load_segmenter(config)
    from demasked_ros.engines.factory import make_demasker

    demasker = make_demasker(config.demasker, threads=config.threads)
    executor, executor_name = choose_executor(config, log)
    info, ignore_index = class_info_for(tuple(str(n) for n in segmenter.class_names))
    providers = tuple(getattr(segmenter, "providers", ()) or ("python",))
    return LoadedModels(segmenter=segmenter, demasker=demasker, executor=executor, class_info=info,
                        ignore_index=ignore_index, model_name=model_name, providers=providers,
                        demasker_name=type(demasker).__name__, executor_name=executor_name)


def _load_segmenter(config: NodeConfig) -> tuple[Segmenter, str]:
    if config.segmenter_plugin:
        module_name, _, attribute = config.segmenter_plugin.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise NodeConfigError(f"segmenter_plugin {config.segmenter_plugin!r}: {error}") from error
        segmenter = factory()
        if not isinstance(segmenter, Segmenter):
            raise NodeConfigError(f"segmenter_plugin {config.segmenter_plugin!r} returned "
                                  f"{type(segmenter).__name__}, not a Segmenter")
        return segmenter, config.segmenter_plugin
    from demasked_ros.engines.onnx_providers import resolve_providers

    providers = resolve_providers(list(config.providers))
    if config.segmenter_model:
        from demasked_ros.engines.segmenters import OnnxSegmenter

        names = config.class_names or CAMVID.names
        return OnnxSegmenter(config.segmenter_model, class_names=names, input_size=config.input_size,
                             mean=config.mean, std=config.std, channel_order=config.channel_order,
                             providers=providers, intra_op_threads=config.threads), config.segmenter_model
    from demasked_ros.engines.defaults import DEFAULT_SEGMENTER_PATH, default_segmenter

    return default_segmenter(providers=providers, threads=config.threads), str(DEFAULT_SEGMENTER_PATH)


def choose_executor(config: NodeConfig, log: Any) -> tuple[BranchExecutor | None, str]:
    """The branch executor: None (the Certifier's chunked CPU executor) unless a GPU one can run.

    ``cuda`` without a usable GPU executor falls back to the CPU with a warning, ``auto`` quietly.
    """
    cpu_name = f"cpu-chunked(chunk_size={config.chunk_size or 'K'})"
    if config.executor == "cpu":
        return None, cpu_name
    reason = _cuda_unavailable_reason()
    if reason is None:
        try:
            module = importlib.import_module("demasked_ros.engines.cuda_executor")
            return module.CudaStreamExecutor(chunk_size=config.chunk_size), "cuda-streams"
        except (ImportError, AttributeError, EngineError) as error:
            reason = f"no CUDA stream executor in this build ({error})"
    if config.executor == "cuda":
        log.warning(f"executor=cuda requested but {reason}; falling back to the CPU executor")
    return None, cpu_name + ("" if config.executor == "cpu" else f" [cuda unavailable: {reason}]")


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


def build_mask_set(config: NodeConfig, height: int, width: int,
                   patch: tuple[int, int] | None = None) -> MaskSet:
    """Masks for a ``height x width`` frame under ``config``'s threat model.

    ``patch`` overrides ``config.patch`` with an explicit ``(ph, pw)`` at this size: the widened
    patch when certifying at a working resolution (see :mod:`demasked_ros.apps.node.resolution`).

    Raises:
        NodeConfigError: when the threat model does not fit this frame size.
    """
    spec = config.patch if patch is None else patch
    try:
        if config.mode == "recovery":
            return recovery_masks(height, width, spec, config.scheme, n_patches=config.n_patches,
                                  k=config.k)
        return detection_masks(height, width, spec, config.scheme, k=config.k,
                               mask_width=config.band_width)
    except CoreError as error:
        raise NodeConfigError(f"cannot build masks for a {height}x{width} frame: {error}") from error
