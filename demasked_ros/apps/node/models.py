"""Turn a validated :class:`NodeConfig` into the node's models and branch executor.

Kept apart from the node so that everything here runs without rclpy. The choices themselves
(plugin, ONNX/torch path or packaged default; demasker by name; CPU/GPU executor with a clean CPU
fallback) are :mod:`demasked_ros.engines.factory`'s; this module only records what was loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from demasked_ros.apps.node.params import NodeConfig
from demasked_ros.core.classes import ClassInfo, class_info_for
from demasked_ros.engines.certifier import BranchExecutor
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.factory import (
    executor_info,
    gpu_device,
    make_demasker,
    make_executor,
    make_segmenter,
    providers_of,
)
from demasked_ros.engines.identity import model_identity
from demasked_ros.engines.probe import ProbeVerdict, probe_models
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
    device: str = "cpu"
    streams: str = "0"
    chunk_size: int | None = None
    probe: ProbeVerdict | None = None

    def describe(self) -> str:
        """One line for logs."""
        return (f"model={self.model_name} providers={list(self.providers)} demasker={self.demasker_name} "
                f"executor={self.executor_name} classes={len(self.class_info.names)}")

    def key_values(self) -> list[tuple[str, str]]:
        """Diagnostics entries."""
        probe = self.probe.key_values() if self.probe is not None else [("batch_probe", "off")]
        return [("model", self.model_name), ("providers", ",".join(self.providers)),
                ("demasker", self.demasker_name), ("executor", self.executor_name), ("device", self.device),
                ("streams", self.streams), *probe]


def load_models(config: NodeConfig, logger: Any = None) -> LoadedModels:
    """Build the segmenter, demasker and executor ``config`` asks for (see :mod:`engines.factory`).

    With ``batch_probe`` on, the models are probed for batch independence
    (:func:`~demasked_ros.engines.probe.probe_models`): batch-dependent models are refused, or run
    one branch per call on the CPU executor (logged; the verdict goes to diagnostics).
    ``model_name`` is the model file's name and content hash (no path), or the plugin reference.

    Raises:
        EngineError: a model that cannot be loaded (missing file, inactive provider, a plugin that
            cannot be imported or returns no Segmenter), or batch-dependent models under ``refuse``.
    """
    log = logger or logging.getLogger(__name__)
    # executor cuda/auto on a machine where torch sees a GPU: the default models' torch twins (and
    # torch files) are built there, and the CUDA stream executor runs them end to end on it.
    device, _ = gpu_device(config.executor)
    segmenter_spec = config.segmenter_spec(device)
    segmenter = make_segmenter(segmenter_spec)
    demasker = make_demasker(config.demasker, threads=config.threads, device=device)
    info, ignore_index = class_info_for(tuple(str(n) for n in segmenter.class_names))
    path = segmenter_spec.model_path
    model_name = segmenter_spec.name if path is None else model_identity(path)
    chunk_size, verdict = config.chunk_size, None
    if config.batch_probe != "off":
        verdict = probe_models(segmenter, demasker)
        if not verdict.independent:
            if config.batch_probe == "refuse":
                raise EngineError(f"refusing batch-dependent models: {verdict.describe()}")
            log.warning(f"{verdict.describe()}; running one branch per call (batch_probe=fallback)")
            chunk_size = 1
    # The executor (CPU chunks or CUDA streams) is built after the probe, so a failed probe keeps
    # the device but runs one branch per call there.
    executor, executor_name = make_executor(config.executor, chunk_size, log, segmenter=segmenter,
                                            demasker=demasker, streams=config.streams)
    if verdict is not None and not verdict.independent:
        executor_name += " [batch probe failed: one branch per call]"
    running = executor_info(executor)
    return LoadedModels(segmenter=segmenter, demasker=demasker, executor=executor, class_info=info,
                        ignore_index=ignore_index, model_name=model_name, providers=providers_of(segmenter),
                        demasker_name=type(demasker).__name__, executor_name=executor_name,
                        device=running["device"], streams=running["streams"], chunk_size=chunk_size,
                        probe=verdict)
