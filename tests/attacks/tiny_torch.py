"""Tiny torch models following the torch-twin contract, and their product-pipeline (numpy) wrappers."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from demasked_ros.attacks.torch_models import TorchPipeline
from demasked_ros.engines.segmenters import CallableSegmenter

CLASSES = ["a", "b", "c", "d"]


class TinySegmenter(nn.Module):
    """Two 3x3 convolutions: RGB 0..255 -> 4-class logits at the input size (normalisation inside)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, len(CLASSES), 3, padding=1)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
                assert conv.bias is not None
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * 0.1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.tanh(self.conv1((images - 128.0) / 64.0)))


class TinyDemasker(nn.Module):
    """Mask-aware 7x7 mean fill, composited (visible pixels unchanged); reads visible pixels only."""

    def forward(self, images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        masked = images * visible
        total = F.avg_pool2d(masked, 7, stride=1, padding=3)
        weight = F.avg_pool2d(visible, 7, stride=1, padding=3)
        fill = torch.where(weight > 0, total / weight.clamp(min=1e-6), torch.full_like(total, 100.0))
        return masked + (1 - visible) * fill


def pipeline() -> TorchPipeline:
    return TorchPipeline(TinySegmenter(), TinyDemasker())


def product_segmenter(pipe: TorchPipeline) -> CallableSegmenter:
    """The tiny segmenter behind the numpy Segmenter protocol (what the Certifier runs)."""

    def segment(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            tensor = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float()
            return pipe.f_logits(tensor).argmax(dim=1).numpy().astype(np.int32)

    return CallableSegmenter(segment, CLASSES)


class ProductDemasker:
    """The tiny demasker behind the numpy Demasker protocol."""

    def __init__(self, pipe: TorchPipeline) -> None:
        self.pipe = pipe

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            tensor = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float()
            vis = torch.from_numpy(visible[:, None].astype(np.float32))
            out = self.pipe.demasker(tensor * vis, vis)  # type: ignore[misc]
        out_np = np.clip(np.rint(out.numpy()), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        return np.where(visible[..., None], images, out_np)


class LeakyDemasker:
    """Deliberately unsound: ignores the masked copy and returns the unmasked frame it was handed
    through a side channel (reads masked pixels)."""

    def __init__(self) -> None:
        self.frame: np.ndarray | None = None

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        assert self.frame is not None
        return np.repeat(self.frame[None], len(images), axis=0)


def scene(height: int = 40, width: int = 60, seed: int = 0) -> np.ndarray:
    """A smooth random RGB scene (blocks of colour), uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 10 + 1, width // 10 + 1, 3)).astype(np.uint8)
    return np.repeat(np.repeat(coarse, 10, axis=0), 10, axis=1)[:height, :width].copy()
