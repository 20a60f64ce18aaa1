"""Ready-made default models: ``default_segmenter()`` and ``default_demasker()``.

Why: the node, the evaluator and ``demasked-certify`` must work out of the box on a fresh
machine with nothing downloaded. The package ships its own small ONNX models, trained on
CamVid by ``demasked-train`` (see ``demasked_ros/models/*_MODEL_CARD.md``); they need only
numpy and onnxruntime, run on the CPU by default and plug directly into ``Certifier``.

``backend="torch"`` returns the torch twins of the same networks (same weights, see
:mod:`demasked_ros.engines.torch_twins`) on ``device="cpu"`` or ``"cuda"``: the engines the CUDA
stream executor keeps on the GPU end to end. ONNX stays the default (no torch needed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from demasked_ros.core.classes import CAMVID, ClassInfo
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.factory import DEFAULT_DEMASKER_PATH, DEFAULT_SEGMENTER_PATH, MODELS_DIR
from demasked_ros.engines.onnx_providers import resolve_providers
from demasked_ros.engines.protocols import Demasker, Segmenter
from demasked_ros.engines.segmenters import IMAGENET_MEAN, IMAGENET_STD, OnnxSegmenter

LOG = logging.getLogger(__name__)

#: Per-channel RGB mean/std in 0-255 units the default segmenter was trained with (its card says so).
DEFAULT_SEGMENTER_MEAN = IMAGENET_MEAN
DEFAULT_SEGMENTER_STD = IMAGENET_STD
__all__ = ["DEFAULT_SEGMENTER_PATH", "default_class_info", "default_demasker", "default_segmenter"]


def default_class_info() -> ClassInfo:
    """Class names and colours of the default segmenter (CamVid, 11 classes, void = 11)."""
    return CAMVID


BACKENDS = ("onnx", "torch")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise EngineError(f"backend must be one of {BACKENDS}, got {backend!r}")


def default_segmenter(
    providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 2, backend: str = "onnx",
    device: str = "cpu",
) -> Segmenter:
    """The packaged CamVid segmenter as an :class:`OnnxSegmenter` (RGB uint8 frames of any size).

    The network takes the full frame, averages it down 2x inside the graph and returns logits at
    the input resolution, so no resizing happens before masking. ``providers`` accepts short
    names (``"cpu"``, ``"cuda"``, ``"tensorrt"``); a requested provider that is not active is an
    :class:`EngineError`. ``threads`` fixes ONNX Runtime's intra-op threads.

    ``backend="torch"``: a :class:`~demasked_ros.engines.torch_backend.TorchSegmenter` around the
    torch twin on ``device`` (``providers`` ignored; ``threads`` = torch CPU threads).
    """
    _check_backend(backend)
    if backend == "torch":
        from demasked_ros.engines.torch_backend import TorchSegmenter, resolve_device
        from demasked_ros.engines.torch_twins import segmenter_module

        resolved = resolve_device(device)
        return TorchSegmenter(segmenter_module(resolved), class_names=CAMVID.names, mean=(0.0, 0.0, 0.0),
                              std=(1.0, 1.0, 1.0), channel_order="RGB", device=resolved, threads=threads)
    if not DEFAULT_SEGMENTER_PATH.is_file():
        raise EngineError(
            f"default segmenter model missing at {DEFAULT_SEGMENTER_PATH}; reinstall the package "
            "or retrain it with `demasked-train segmenter --export PATH`"
        )
    return OnnxSegmenter(
        DEFAULT_SEGMENTER_PATH,
        class_names=CAMVID.names,
        input_size=None,
        mean=DEFAULT_SEGMENTER_MEAN,
        std=DEFAULT_SEGMENTER_STD,
        channel_order="RGB",
        providers=resolve_providers(providers),
        intra_op_threads=threads,
    )


def default_demasker(
    providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 2, backend: str = "onnx",
    device: str = "cpu",
) -> Demasker:
    """The packaged learned demasker; TELEA (with a warning) when its weights file is missing.

    The fallback keeps certificates sound (any demasker does; it only changes how much gets
    certified) for installs that strip package data; the node reports the demasker in use.
    ``backend="torch"``: a :class:`~demasked_ros.engines.torch_backend.TorchDemasker` around the
    torch twin on ``device`` (no fallback: missing twin weights are an :class:`EngineError`).
    """
    _check_backend(backend)
    if backend == "torch":
        from demasked_ros.engines.torch_backend import TorchDemasker, resolve_device
        from demasked_ros.engines.torch_twins import demasker_module

        resolved = resolve_device(device)
        return TorchDemasker(demasker_module(resolved), device=resolved, threads=threads)
    weights = MODELS_DIR / DEFAULT_DEMASKER_PATH.name  # MODELS_DIR read here, so tests can move it
    if not weights.is_file():
        from demasked_ros.engines.demaskers import TeleaDemasker

        LOG.warning("learned demasker weights missing at %s; falling back to OpenCV TELEA", weights)
        return TeleaDemasker()
    from demasked_ros.engines.learned_demasker import default_learned_demasker

    return default_learned_demasker(providers=resolve_providers(providers), threads=threads)
