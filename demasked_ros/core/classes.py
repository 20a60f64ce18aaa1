"""Class metadata (names, colours, ignore index) shared by segmenters, node, CLI and evaluator.

It also owns the one palette for label sets without their own colours, so every app paints the
same class in the same colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from demasked_ros.core.errors import CoreError


@dataclass(frozen=True)
class ClassInfo:
    """Names and RGB colours of a label set; ``ignore_index`` marks void pixels in ground truth."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255

    def __post_init__(self) -> None:
        if len(self.names) != len(self.colors):
            raise CoreError(f"{len(self.names)} class names but {len(self.colors)} colours")
        if not self.names:
            raise CoreError("a label set needs at least one class")
        for color in self.colors:
            if len(color) != 3 or not all(0 <= c <= 255 for c in color):
                raise CoreError(f"colour {color} is not an RGB triple in 0..255")

    @property
    def num_classes(self) -> int:
        """Number of real classes (the ignore index is not one of them)."""
        return len(self.names)


#: CamVid in its 11-class SegNet form (label 11 is void).
CAMVID = ClassInfo(
    names=(
        "sky", "building", "pole", "road", "pavement", "tree",
        "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
    ),
    colors=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
        (0, 128, 192),
    ),
    ignore_index=11,
)


def palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """``count`` distinct, deterministic RGB colours for label sets without their own colours."""
    rng = np.random.default_rng(20240601)
    colors = rng.integers(40, 256, size=(count, 3))
    return tuple((int(r), int(g), int(b)) for r, g, b in colors)


def class_info_for(names: Sequence[str]) -> tuple[ClassInfo, int]:
    """ClassInfo (names + colours) and ignore index for a segmenter's class names.

    CamVid's names get CamVid's colours and void index; any other set gets :func:`palette`
    colours and no ignore index (-1).
    """
    if tuple(names) == CAMVID.names:
        return CAMVID, CAMVID.ignore_index
    return ClassInfo(names=tuple(names), colors=palette(len(names)), ignore_index=-1), -1
