"""A tiny torch segmenter and a tiny CamVid-layout folder for fast fine-tuning tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn


class TinySegmenter(nn.Module):
    """0..255 RGB -> 11 CamVid logits at the input size (two 3x3 convs); the finetune contract."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 11, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x / 255.0 - 0.5)


def tiny_segmenter() -> nn.Module:
    """Factory for ``--model tests.training.tiny_torch:tiny_segmenter`` (seeded weights)."""
    torch.manual_seed(0)
    return TinySegmenter()


def write_tiny_camvid(root: Path, frames: int = 6, height: int = 48, width: int = 64) -> Path:
    """CamVid layout (train/, trainannot/, val/, valannot/) of smooth two-class scenes: sky on
    top (label 0, blue), road below (label 3, grey), a car box (label 8, red) somewhere."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(frames):
            labels = np.zeros((height, width), np.uint8)
            horizon = int(rng.integers(height // 3, 2 * height // 3))
            labels[horizon:] = 3
            x0 = int(rng.integers(0, width - 16))
            labels[horizon - 6 : horizon + 6, x0 : x0 + 16] = 8
            palette = np.array([[70, 130, 200]] + [[0, 0, 0]] * 2 + [[110, 110, 110]] + [[0, 0, 0]] * 4
                               + [[200, 30, 30]] + [[0, 0, 0]] * 3, np.uint8)
            rgb = np.clip(palette[labels].astype(int) + rng.integers(-10, 10, (height, width, 3)), 0, 255)
            name = f"tiny_{i:03d}.png"
            cv2.imwrite(str(root / split / name), cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / f"{split}annot" / name), labels)
    return root
