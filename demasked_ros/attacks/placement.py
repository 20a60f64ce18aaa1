"""The threat model on the attacker's side: where N patches of the configured size go.

A placement is a set of N axis-aligned rectangles of exactly the certified patch size lying fully
inside the frame (square or rectangular, as :func:`~demasked_ros.core.threat.patch_shape` resolves
the patch spec). Locations are drawn at random, taken from a grid, or chosen as the worst of G
random candidates under a caller's score (e.g. the loss after a few attack steps).

Everything here is numpy; an attack only ever writes pixels inside its placement's rectangles
(:func:`paste`), which the tests check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from demasked_ros.attacks.errors import AttackError
from demasked_ros.core.errors import CoreError
from demasked_ros.core.threat import PatchSpec, patch_shape


@dataclass(frozen=True)
class Placement:
    """N patch rectangles: ``boxes[i] = (y, x, height, width)`` in frame pixels."""

    boxes: tuple[tuple[int, int, int, int], ...]

    def __post_init__(self) -> None:
        if not self.boxes:
            raise AttackError("a placement needs at least one patch")

    @property
    def size(self) -> tuple[int, int]:
        """Patch size (all patches share it)."""
        return self.boxes[0][2], self.boxes[0][3]

    def region(self, height: int, width: int) -> np.ndarray:
        """H x W bool map of the pixels the attacker may change."""
        region = np.zeros((height, width), dtype=bool)
        for y, x, h, w in self.boxes:
            region[y:y + h, x:x + w] = True
        return region

    def to_json(self) -> list[list[int]]:
        """``[[y, x, h, w], ...]`` for JSONL records."""
        return [list(box) for box in self.boxes]

    @classmethod
    def from_json(cls, boxes: Sequence[Sequence[int]]) -> Placement:
        """Inverse of :meth:`to_json`."""
        return cls(tuple((int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in boxes))


def resolve_patch(height: int, width: int, spec: PatchSpec) -> tuple[int, int]:
    """The patch size in pixels for this frame size (AttackError on a patch that does not fit)."""
    try:
        return patch_shape(height, width, spec)
    except CoreError as error:
        raise AttackError(str(error)) from error


def random_placement(rng: np.random.Generator, height: int, width: int, patch: tuple[int, int],
                     n_patches: int = 1) -> Placement:
    """N patches at independent uniformly random positions fully inside the frame."""
    ph, pw = patch
    _check_fits(height, width, patch, n_patches)
    return Placement(tuple((int(rng.integers(0, height - ph + 1)), int(rng.integers(0, width - pw + 1)),
                            ph, pw) for _ in range(n_patches)))


def grid_placements(height: int, width: int, patch: tuple[int, int],
                    stride: int | tuple[int, int] | None = None) -> list[Placement]:
    """One-patch placements on a grid (default stride: the patch size), the last row/column on the
    frame edge so the whole frame is covered."""
    ph, pw = patch
    _check_fits(height, width, patch, 1)
    sy, sx = (stride, stride) if isinstance(stride, int) else (stride or (ph, pw))
    if sy < 1 or sx < 1:
        raise AttackError(f"grid stride must be positive, got {stride}")
    ys = _edge_grid(height - ph, sy)
    xs = _edge_grid(width - pw, sx)
    return [Placement(((y, x, ph, pw),)) for y in ys for x in xs]


def worst_of(candidates: Sequence[Placement], score: Callable[[Placement], float]) -> tuple[Placement, float]:
    """The candidate with the highest ``score`` (the attacker's objective) and that score."""
    if not candidates:
        raise AttackError("worst-of needs at least one candidate placement")
    scored = [(float(score(c)), i) for i, c in enumerate(candidates)]
    best, index = max(scored)
    return candidates[index], best


def paste(image: np.ndarray, placement: Placement, contents: Sequence[np.ndarray]) -> np.ndarray:
    """Copy of ``image`` (H x W x 3 uint8) with each patch's pixels replaced by its content."""
    if len(contents) != len(placement.boxes):
        raise AttackError(f"{len(contents)} patch contents for {len(placement.boxes)} patches")
    out = image.copy()
    for (y, x, h, w), content in zip(placement.boxes, contents, strict=True):
        content = np.asarray(content)
        if content.shape != (h, w, 3) or content.dtype != np.uint8:
            raise AttackError(f"patch content must be uint8 {(h, w, 3)}, got {content.shape} {content.dtype}")
        if y < 0 or x < 0 or y + h > image.shape[0] or x + w > image.shape[1]:
            raise AttackError(f"patch {(y, x, h, w)} does not lie inside the {image.shape[:2]} frame")
        out[y:y + h, x:x + w] = content
    return out


def _edge_grid(extent: int, stride: int) -> list[int]:
    values = list(range(0, extent + 1, stride))
    if values[-1] != extent:
        values.append(extent)
    return values


def _check_fits(height: int, width: int, patch: tuple[int, int], n_patches: int) -> None:
    ph, pw = patch
    if n_patches < 1:
        raise AttackError(f"the number of patches must be >= 1, got {n_patches}")
    if not (1 <= ph <= height and 1 <= pw <= width):
        raise AttackError(f"a {ph}x{pw} patch does not fit in a {height}x{width} frame")
