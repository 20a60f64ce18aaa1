"""PyTorch engines: a segmenter (``nn.Module``, TorchScript or ``torch.export`` file) and a demasker.

Why a separate backend: many users' models exist only as PyTorch code, and the GPU path needs
models that keep their tensors on the device. This wrapper declares what the model expects
(input size, channel order, mean/std, class names), does the resizing after demasking, and keeps
inference deterministic: eval mode, no autograd, a fixed thread count (1 by default on CPU: on a
shared CPU, 2 torch threads collapse under contention while 1 does not), deterministic
algorithms, cuDNN benchmark off and TF32 off on GPU (:func:`configure_determinism`). Those device,
determinism and model-loading helpers live in :mod:`~.torch_runtime` and are re-exported here.

Both engines have two entry points: the numpy protocol (:meth:`TorchSegmenter.segment`,
:meth:`TorchDemasker.demask`) and a tensor path on the engine's device
(:meth:`TorchSegmenter.segment_tensor`, :meth:`TorchDemasker.demask_tensor`) that the CUDA stream
executor chains without any host round trip. The numpy entry points run the tensor path, so both
give the same bits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from demasked_ros.engines.demaskers import hide_masked
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.segmenters import IMAGENET_MEAN, IMAGENET_STD, check_images, check_labels
from demasked_ros.engines.torch_runtime import (
    configure_determinism,
    exported_to_eval,
    fixed_size_calls,
    load_torch_model,
    resolve_device,
    traced_training_ops,
)

__all__ = ["TorchDemasker", "TorchSegmenter", "configure_determinism", "exported_to_eval", "fixed_size_calls",
           "load_torch_model", "resolve_device", "traced_training_ops"]


class TorchSegmenter:
    """A PyTorch segmentation model as a :class:`~demasked_ros.engines.protocols.Segmenter`.

    Args:
        model: an ``nn.Module``, a TorchScript file or a ``torch.export`` ``.pt2`` file. It maps
            float32 ``B x 3 x h x w`` to logits ``B x C x h' x w'`` or integer labels
            ``B x h' x w'``; a dict output uses its ``"out"`` entry, a tuple/list its first item.
        class_names: names of the C classes (index = label).
        input_size: ``(h, w)`` the network expects; None feeds frames at their own size.
            Resizing happens here, after demasking.
        mean, std: per-channel normalisation in 0-255 units, in the model's channel order.
        channel_order: ``"RGB"`` or ``"BGR"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        threads: torch intra-op threads when on CPU (process-wide setting in PyTorch).
        fixed_batch: run the network on batches of exactly this many images (zero-padded; see
            :func:`fixed_size_calls`); None: the batch as given.
    """

    def __init__(
        self,
        model: torch.nn.Module | str | Path,
        class_names: Sequence[str],
        input_size: tuple[int, int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        channel_order: str = "RGB",
        device: str | torch.device = "cpu",
        threads: int = 1,
        fixed_batch: int | None = None,
    ) -> None:
        if fixed_batch is not None and fixed_batch < 1:
            raise EngineError(f"fixed_batch must be >= 1 or None, got {fixed_batch}")
        self.fixed_batch = fixed_batch
        if not class_names:
            raise EngineError("a segmenter needs at least one class name")
        if channel_order not in ("RGB", "BGR"):
            raise EngineError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise EngineError("mean and std need 3 values each, std positive")
        self.device = resolve_device(device)
        configure_determinism(self.device, threads)
        self.threads = int(threads)
        self.class_names = list(class_names)
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.channel_order = channel_order
        self.model = load_torch_model(model, self.device)
        self._mean = torch.tensor(list(mean), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(list(std), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def segment(self, images: np.ndarray) -> np.ndarray:
        """Labels (int32) at the input resolution for a batch of RGB uint8 images."""
        check_images(images)
        height, width = images.shape[1:3]
        batch = images
        if self.input_size is not None and batch.shape[1:3] != self.input_size:
            h, w = self.input_size
            batch = np.stack([cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) for img in batch])
        tensor = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(self.device)
        labels = self._infer(tensor, height, width).cpu().numpy()
        return check_labels(labels, images, len(self.class_names))

    def segment_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """Tensor path: uint8 ``B x 3 x H x W`` RGB on the engine's device -> int32 ``B x H x W``
        labels on the device, with no host synchronisation.

        With ``input_size`` the resize is torch's bilinear one (the numpy path uses OpenCV's), so
        only models fed at frame size give the numpy path's exact bits.
        """
        if (not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4
                or images.shape[1] != 3 or images.shape[0] < 1):
            raise EngineError(f"tensor path expects uint8 B x 3 x H x W, got "
                              f"{tuple(getattr(images, 'shape', ()))} "
                              f"{getattr(images, 'dtype', type(images))}")
        if images.device != self.device:
            raise EngineError(f"tensor on {images.device}, segmenter on {self.device}")
        height, width = images.shape[2:]
        batch = images
        if self.input_size is not None and tuple(batch.shape[2:]) != self.input_size:
            batch = F.interpolate(batch.float(), size=self.input_size, mode="bilinear",
                                  align_corners=False).round().clamp(0, 255).to(torch.uint8)
        return self._infer(batch, height, width)

    def _infer(self, batch: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """uint8 B x 3 x h x w RGB on the device -> int32 labels B x height x width on the device."""
        if self.channel_order == "BGR":
            batch = batch.flip(1)
        try:
            with torch.inference_mode():
                return fixed_size_calls(lambda piece: self._to_labels(
                    _primary_output(self.model((piece.float() - self._mean) / self._std)), height, width),
                    [batch], self.fixed_batch)
        except EngineError:
            raise
        except Exception as error:  # any failure inside the user's model
            raise EngineError(f"torch segmenter failed on a {tuple(batch.shape)} batch: {error}") from error

    def _to_labels(self, output: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if output.ndim == 4:
            if output.shape[1] != len(self.class_names):
                raise EngineError(f"model outputs {output.shape[1]} classes, "
                                  f"{len(self.class_names)} class names were given")
            if tuple(output.shape[2:]) != (height, width):
                output = F.interpolate(output.float(), size=(height, width), mode="bilinear",
                                       align_corners=False)
            return output.argmax(dim=1).to(torch.int32)
        if output.ndim == 3 and not torch.is_floating_point(output):
            if tuple(output.shape[1:]) != (height, width):
                output = F.interpolate(output[:, None].float(), size=(height, width), mode="nearest")[:, 0]
            # Range is checked by check_labels (numpy path) or by the executor's device-side check.
            return output.to(torch.int32)
        raise EngineError(f"unsupported model output {tuple(output.shape)} {output.dtype}: "
                          "expected B x C x H x W logits or B x H x W integer labels")


def _primary_output(output: Any) -> torch.Tensor:
    """The tensor of interest from a model output (tensor, ``{"out": ...}`` dict, tuple or list)."""
    if isinstance(output, Mapping):
        if "out" not in output:
            raise EngineError(f"model returned a dict without an 'out' entry: {sorted(output)}")
        output = output["out"]
    elif isinstance(output, tuple | list):
        if not output:
            raise EngineError("model returned an empty sequence")
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise EngineError(f"model returned {type(output).__name__}, expected a tensor")
    return output


class TorchDemasker:
    """A torch demasking module as a :class:`~demasked_ros.engines.protocols.Demasker`.

    ``model(images float32 B x 3 x H x W in 0..255, visible float32 B x 1 x H x W) -> float32
    B x 3 x H x W in 0..255`` (e.g. :func:`demasked_ros.engines.torch_twins.demasker_module`).
    Soundness is enforced here, outside the network: masked pixels are zeroed before it, visible
    pixels are copied through bit for bit after it, and non-finite fills become 0 (a fill, however
    bad, depends on visible pixels only, so the certificate stays sound; a host sync to raise
    instead would stall the device pipeline).

    Args:
        model: the module.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        threads: torch intra-op threads on CPU (process-wide).
        max_batch: images per network call (bounds device memory).
        fixed_batch: pad every call to exactly ``max_batch`` images (see :func:`fixed_size_calls`).
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", threads: int = 1,
                 max_batch: int = 16, fixed_batch: bool = False) -> None:
        if max_batch < 1:
            raise EngineError(f"max_batch must be >= 1, got {max_batch}")
        self.device = resolve_device(device)
        configure_determinism(self.device, threads)
        self.threads = int(threads)
        self.max_batch = int(max_batch)
        self.fixed_batch = fixed_batch
        self.model = load_torch_model(model, self.device)

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Demasked B x H x W x 3 uint8 images (numpy protocol); visible pixels returned unchanged."""
        hidden = hide_masked(images, visible)  # validates shapes, zeroes masked pixels
        tensor = torch.from_numpy(np.ascontiguousarray(hidden.transpose(0, 3, 1, 2))).to(self.device)
        out = self.demask_tensor(tensor, torch.from_numpy(visible.copy()).to(self.device))
        return np.ascontiguousarray(out.permute(0, 2, 3, 1).cpu().numpy())

    def demask_tensor(self, images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Tensor path: uint8 ``B x 3 x H x W`` and bool ``B x H x W`` visibility on the device ->
        uint8 ``B x 3 x H x W`` on the device, no host synchronisation."""
        if (not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4
                or images.shape[1] != 3):
            raise EngineError(f"demasker tensor path expects uint8 B x 3 x H x W, got "
                              f"{tuple(getattr(images, 'shape', ()))} {getattr(images, 'dtype', '')}")
        if (not isinstance(visible, torch.Tensor) or visible.dtype != torch.bool
                or tuple(visible.shape) != (images.shape[0], *images.shape[2:])):
            raise EngineError(f"visibility must be bool {(images.shape[0], *images.shape[2:])}, got "
                              f"{tuple(getattr(visible, 'shape', ()))} {getattr(visible, 'dtype', '')}")
        if images.device != self.device or visible.device != self.device:
            raise EngineError(f"tensors on {images.device}/{visible.device}, demasker on {self.device}")
        keep = visible[:, None]
        hidden = images * keep  # masked pixels are zero whatever the caller passed
        parts = []
        try:
            with torch.inference_mode():
                for start in range(0, images.shape[0], self.max_batch):
                    stop = start + self.max_batch
                    pieces = [hidden[start:stop].float(), keep[start:stop].float()]
                    size = self.max_batch if self.fixed_batch else None
                    filled = fixed_size_calls(self.model, pieces, size)
                    parts.append(torch.nan_to_num(filled, nan=0.0, posinf=255.0, neginf=0.0)
                                 .round().clamp(0, 255).to(torch.uint8))
        except Exception as error:  # any failure inside the module
            raise EngineError(f"torch demasker failed on a {tuple(images.shape)} batch: {error}") from error
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        if out.shape != images.shape:
            raise EngineError(f"demasker returned {tuple(out.shape)}, expected {tuple(images.shape)}")
        return torch.where(keep, hidden, out)
