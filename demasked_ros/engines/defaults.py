"""Ready-made default models: ``default_segmenter()`` and ``default_demasker()``.

Why: the node, the evaluator and ``demasked-certify`` must work out of the box on a fresh
machine with nothing downloaded. The package ships its own small ONNX models, trained on
CamVid by ``demasked-train`` (see ``demasked_ros/models/*_MODEL_CARD.md``); they need only
numpy and onnxruntime, run on the CPU by default and plug directly into ``Certifier``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from demasked_ros.core.classes import CAMVID, ClassInfo
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.factory import DEFAULT_DEMASKER_PATH, DEFAULT_SEGMENTER_PATH, MODELS_DIR
from demasked_ros.engines.onnx_providers import resolve_providers
from demasked_ros.engines.protocols import Demasker
from demasked_ros.engines.segmenters import IMAGENET_MEAN, IMAGENET_STD, OnnxSegmenter

LOG = logging.getLogger(__name__)

#: Per-channel RGB mean/std in 0-255 units the default segmenter was trained with (its card says so).
DEFAULT_SEGMENTER_MEAN = IMAGENET_MEAN
DEFAULT_SEGMENTER_STD = IMAGENET_STD
__all__ = ["DEFAULT_SEGMENTER_PATH", "default_class_info", "default_demasker", "default_segmenter"]


def default_class_info() -> ClassInfo:
    """Class names and colours of the default segmenter (CamVid, 11 classes, void = 11)."""
    return CAMVID


def default_segmenter(
    providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 2
) -> OnnxSegmenter:
    """The packaged CamVid segmenter as an :class:`OnnxSegmenter` (RGB uint8 frames of any size).

    The network takes the full frame, averages it down 2x inside the graph and returns logits at
    the input resolution, so no resizing happens before masking. ``providers`` accepts short
    names (``"cpu"``, ``"cuda"``, ``"tensorrt"``); a requested provider that is not active is an
    :class:`EngineError`. ``threads`` fixes ONNX Runtime's intra-op threads.
    """
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
    providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 2
) -> Demasker:
    """The packaged learned demasker; TELEA (with a warning) when its weights file is missing.

    The fallback keeps certificates sound (any demasker does; it only changes how much gets
    certified) for installs that strip package data; the node reports the demasker in use.
    """
    weights = MODELS_DIR / DEFAULT_DEMASKER_PATH.name  # MODELS_DIR read here, so tests can move it
    if not weights.is_file():
        from demasked_ros.engines.demaskers import TeleaDemasker

        LOG.warning("learned demasker weights missing at %s; falling back to OpenCV TELEA", weights)
        return TeleaDemasker()
    from demasked_ros.engines.learned_demasker import default_learned_demasker

    return default_learned_demasker(providers=resolve_providers(providers), threads=threads)
