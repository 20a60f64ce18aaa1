"""Optional adapter for mmsegmentation models (the paper's model zoo): config + checkpoint.

Why optional: mmcv has no wheel for the pinned torch (2.13.0); it builds from source in
~15-25 minutes (``scripts/build_mmcv.sh``). The adapter therefore imports mmseg lazily and raises
a clear :class:`EngineError` when it is not installed; nothing else in the package needs it.

mmseg's own test pipeline does the model's resizing and its data preprocessor the mean/std and
channel conversion, all inside :meth:`MmsegSegmenter.segment`, i.e. after demasking; predictions
come back at the frame's resolution.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.segmenters import check_images, check_labels


def mmseg_available() -> bool:
    """True when mmsegmentation (and hence mmcv / mmengine) can be imported."""
    return importlib.util.find_spec("mmseg") is not None and importlib.util.find_spec("mmcv") is not None


class MmsegSegmenter:
    """An mmsegmentation model as a :class:`~demasked_ros.engines.protocols.Segmenter`.

    Args:
        config: mmseg config file (``.py``) or an ``mmengine.Config``.
        checkpoint: weights file; None keeps the random initialisation (tests, smoke runs).
        device: ``"cpu"`` or ``"cuda:N"``.
        threads: torch intra-op threads on CPU (1 is robust on a shared CPU).
        class_names: override the names the checkpoint/config declares.

    Declared model properties (read from the config): :attr:`mean`, :attr:`std` (0-255 units),
    :attr:`channel_order` of the network input, :attr:`input_size` (the test pipeline's resize
    scale, or None) and :attr:`class_names`.
    """

    def __init__(
        self,
        config: str | Path | Any,
        checkpoint: str | Path | None = None,
        device: str = "cpu",
        threads: int = 1,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not mmseg_available():
            raise EngineError(
                "mmsegmentation is not installed; build mmcv with scripts/build_mmcv.sh, then "
                "`pip install mmsegmentation` (see the script's header)"
            )
        import torch
        from mmseg.apis import init_model

        if device == "cpu":
            torch.set_num_threads(int(threads))
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise EngineError(f"mmseg checkpoint not found: {checkpoint}")
        if isinstance(config, str | Path) and not Path(config).is_file():
            raise EngineError(f"mmseg config not found: {config}")
        try:
            self.model = init_model(config if not isinstance(config, Path) else str(config),
                                    None if checkpoint is None else str(checkpoint), device=device)
        except Exception as error:  # mmengine raises many types (KeyError, TypeError, ...)
            raise EngineError(f"cannot build mmseg model from {config}: {error}") from error
        if not str(device).startswith("cuda"):
            from mmengine.model import revert_sync_batchnorm

            self.model = revert_sync_batchnorm(self.model)  # SyncBN configs cannot run on the CPU
        self.model.eval()
        meta = getattr(self.model, "dataset_meta", None) or {}
        names = class_names if class_names is not None else meta.get("classes")
        if not names:
            num = int(self.model.decode_head.num_classes)
            names = [f"class_{i}" for i in range(num)]
        self.class_names = list(names)
        self.palette = meta.get("palette")
        cfg = self.model.cfg
        preprocessor = cfg.get("data_preprocessor") or cfg.model.get("data_preprocessor") or {}
        self.mean = tuple(float(v) for v in preprocessor.get("mean", (0.0, 0.0, 0.0)))
        self.std = tuple(float(v) for v in preprocessor.get("std", (1.0, 1.0, 1.0)))
        self.channel_order = "RGB" if preprocessor.get("bgr_to_rgb", False) else "BGR"
        self.input_size = _pipeline_scale(cfg)
        self.device = device

    def segment(self, images: np.ndarray) -> np.ndarray:
        """Labels at the input resolution for a batch of RGB uint8 images."""
        from mmseg.apis import inference_model

        check_images(images)
        bgr = [np.ascontiguousarray(image[..., ::-1]) for image in images]  # mmseg pipelines read BGR
        try:
            results = inference_model(self.model, bgr)
        except Exception as error:
            raise EngineError(f"mmseg model failed on a {images.shape} batch: {error}") from error
        if not isinstance(results, list):
            results = [results]
        labels = np.stack([r.pred_sem_seg.data[0].cpu().numpy().astype(np.int32) for r in results])
        return check_labels(labels, images, len(self.class_names))


def _pipeline_scale(cfg: Any) -> tuple[int, int] | None:
    """``(h, w)`` of the test pipeline's ``Resize`` step, or None when it does not resize."""
    pipeline = cfg.get("test_pipeline") or []
    for step in pipeline:
        if step.get("type") == "Resize" and step.get("scale") is not None:
            width, height = step["scale"]
            return int(height), int(width)
    return None
