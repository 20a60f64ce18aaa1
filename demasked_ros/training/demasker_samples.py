"""Training samples of the learned demasker: the mask families and deterministic (crop, mask) batches.

Split from :mod:`demasked_ros.training.demasker_train` (which re-exports these names). Samples are
random crops of training frames, each hidden by one mask of the families the node uses (recovery
column K=5 at 0.5 % patch, detection column bands at 1 % patch) or, to generalise, of other schemes
and patch sizes. The crop position is the same for the image and the full-frame mask, so the network
sees the real mask geometry. All draws come from one numpy Generator in a fixed order, which is what
makes ``--resume`` continue bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.engines.demasker_net import MODEL_STRIDE
from demasked_ros.training.data import TrainingDataError

#: The families the node uses by default, as (label, MaskSet factory arguments).
DEFAULT_FAMILIES = ("recovery-column-0.5%", "detection-column-1%")
EXTRA_FRACTIONS = (0.002, 0.003, 0.0075, 0.01, 0.015, 0.02)


def build_mask_families(height: int, width: int, extra: bool = True) -> dict[str, np.ndarray]:
    """Visibility masks (K x H x W bool) per family name; the default families come first."""
    families = {
        DEFAULT_FAMILIES[0]: recovery_masks(height, width, 0.005, "column").visible,
        DEFAULT_FAMILIES[1]: detection_masks(height, width, 0.01, "column").visible,
    }
    if extra:
        for fraction in EXTRA_FRACTIONS:
            for scheme in ("column", "row", "3-mask", "4-mask"):
                families[f"recovery-{scheme}-{fraction:.2%}"] = recovery_masks(
                    height, width, fraction, scheme
                ).visible
            for axis in ("column", "row"):
                families[f"detection-{axis}-{fraction:.2%}"] = detection_masks(
                    height, width, fraction, axis
                ).visible
    return families


class SampleSource:
    """Deterministic random (crop, mask) training batches drawn from one numpy Generator."""

    def __init__(
        self,
        images: np.ndarray,
        families: dict[str, np.ndarray],
        crop: tuple[int, int],
        default_probability: float,
        labels: np.ndarray | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.families = list(families.values())
        self.crop = crop
        self.default_probability = default_probability
        height, width = images.shape[1:3]
        if crop[0] > height or crop[1] > width or crop[0] % MODEL_STRIDE or crop[1] % MODEL_STRIDE:
            raise TrainingDataError(
                f"crop {crop} must fit in {height}x{width} and be a multiple of {MODEL_STRIDE}"
            )

    def batch(
        self, rng: np.random.Generator, size: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``size`` crops (uint8 B x h x w x 3), their visibility masks (bool B x h x w) and, when
        the source has labels, the cropped labels (B x h x w); the random draws are the same."""
        crop_h, crop_w = self.crop
        height, width = self.images.shape[1:3]
        images, masks, labels = [], [], []
        n_default = len(DEFAULT_FAMILIES)
        for _ in range(size):
            if rng.random() < self.default_probability or len(self.families) == n_default:
                family = self.families[int(rng.integers(n_default))]
            else:
                family = self.families[int(rng.integers(n_default, len(self.families)))]
            mask = family[int(rng.integers(family.shape[0]))]
            index = int(rng.integers(self.images.shape[0]))
            image = self.images[index]
            label = self.labels[index] if self.labels is not None else image[..., 0]
            if rng.random() < 0.5:
                image, label = image[:, ::-1], label[:, ::-1]
            top = int(rng.integers(height - crop_h + 1))
            left = int(rng.integers(width - crop_w + 1))
            images.append(image[top : top + crop_h, left : left + crop_w])
            masks.append(mask[top : top + crop_h, left : left + crop_w])
            labels.append(label[top : top + crop_h, left : left + crop_w])
        return np.stack(images), np.stack(masks), np.stack(labels) if self.labels is not None else None


def to_tensors(
    images: np.ndarray, visible: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 B x H x W x 3 + bool B x H x W -> float NCHW image in [0, 1] and float mask."""
    image = torch.from_numpy(np.array(images, dtype=np.float32)).to(device).permute(0, 3, 1, 2) / 255.0
    mask = torch.from_numpy(np.array(visible, dtype=np.float32)).to(device).unsqueeze(1)
    return image * mask, mask

