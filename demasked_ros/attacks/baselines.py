"""Baseline patches that need no gradients: uniform noise and natural-image crops from other frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from demasked_ros.attacks.errors import AttackError
from demasked_ros.attacks.placement import Placement


def noise_contents(rng: np.random.Generator, placement: Placement) -> list[np.ndarray]:
    """Uniform RGB noise, one array per patch."""
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _, _, h, w in placement.boxes]


def natural_contents(rng: np.random.Generator, placement: Placement,
                     donors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Crops of the patch size cut at random positions from randomly chosen donor frames."""
    if not donors:
        raise AttackError("natural-image patches need at least one donor frame")
    contents = []
    for _, _, h, w in placement.boxes:
        donor = donors[int(rng.integers(0, len(donors)))]
        if donor.shape[0] < h or donor.shape[1] < w:
            raise AttackError(f"donor frame {donor.shape[:2]} is smaller than the {h}x{w} patch")
        y, x = int(rng.integers(0, donor.shape[0] - h + 1)), int(rng.integers(0, donor.shape[1] - w + 1))
        contents.append(np.ascontiguousarray(donor[y:y + h, x:x + w, :3]).astype(np.uint8))
    return contents
