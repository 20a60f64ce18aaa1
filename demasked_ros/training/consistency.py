"""Certification-aware training pieces: branch masks, training-time demaskers, consistency loss.

Why: a pixel is certified only when (nearly) all K masked-and-demasked branches agree, so the
quantity to train is the agreement of the branches with the clean prediction, not clean accuracy
alone. Per training image we build masked copies with the product's own mask families
(:mod:`demasked_ros.core.masks`: recovery and detection, several patch sizes), shifted by a random
offset so every stripe position is seen, fill them with a demasker (the shipped learned one, TELEA,
or a torch checkpoint that is being trained), and train the segmenter with

    CE(clean, y) + ce_weight * mean_b CE(branch_b, y) + kl_weight * mean_b KL(p_clean || p_branch_b)

where ``p_clean`` is detached (stop-gradient): branches are pulled towards the clean prediction,
not the other way round. Masking here mirrors deployment: masks are built at frame resolution and
applied to the full-resolution input before the model's own downscaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from demasked_ros.core.masks import MaskSet, detection_masks, recovery_masks
from demasked_ros.training.data import IGNORE_INDEX, TrainingDataError

#: Patch sizes (fraction of the frame area) of the recovery / detection families used in training;
#: the node's defaults (recovery column 0.5 %, detection column 1 %) are among them.
RECOVERY_FRACTIONS: tuple[float, ...] = (0.0025, 0.005, 0.01)
DETECTION_FRACTIONS: tuple[float, ...] = (0.005, 0.01, 0.02)


@dataclass(frozen=True)
class BranchFamilies:
    """Mask families at frame resolution, grouped by mode (one branch of each mode per image)."""

    recovery: tuple[MaskSet, ...]
    detection: tuple[MaskSet, ...]

    @property
    def modes(self) -> tuple[tuple[MaskSet, ...], ...]:
        """The non-empty groups, in the order branches are drawn."""
        return tuple(group for group in (self.recovery, self.detection) if group)


def product_families(height: int, width: int,
                     recovery_fractions: Sequence[float] = RECOVERY_FRACTIONS,
                     detection_fractions: Sequence[float] = DETECTION_FRACTIONS,
                     schemes: Sequence[str] = ("column",), axes: Sequence[str] = ("column",)
                     ) -> BranchFamilies:
    """The product's recovery and detection families for an ``height x width`` frame."""
    recovery = tuple(recovery_masks(height, width, f, s) for f in recovery_fractions for s in schemes)
    detection = tuple(detection_masks(height, width, f, a) for f in detection_fractions for a in axes)
    if not recovery and not detection:
        raise TrainingDataError("no mask family selected for consistency training")
    return BranchFamilies(recovery, detection)


def draw_branch_masks(families: BranchFamilies, batch: int, height: int, width: int,
                      rng: np.random.Generator, one_mode: bool = False) -> np.ndarray:
    """Visibility masks (bool ``batch * n_modes x height x width``, or ``batch x ...`` with
    ``one_mode``: one randomly chosen mode per image, half the cost), image-major.

    For each image and each mode: a random family, a random mask of it, shifted by a random
    (dy, dx) offset with wrap-around and cut to the crop size, so that the stripe phase relative
    to the scene varies (a patch may sit anywhere in deployment).
    """
    out = []
    for _ in range(batch):
        modes = families.modes
        groups = (modes[int(rng.integers(len(modes)))],) if one_mode else modes
        for group in groups:
            masks = group[int(rng.integers(len(group)))]
            visible = masks.visible[int(rng.integers(masks.k))]
            rows = (np.arange(height) + int(rng.integers(masks.height))) % masks.height
            cols = (np.arange(width) + int(rng.integers(masks.width))) % masks.width
            out.append(visible[np.ix_(rows, cols)])
    return np.stack(out)


class Filler(Protocol):
    """Anything with the engines' ``Demasker.demask`` signature (uint8 images, bool visibility)."""

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Filled B x H x W x 3 uint8 images; visible pixels unchanged."""
        ...


class TorchCheckpointFiller:
    """A ``demasker_train`` checkpoint (``DemaskerNet``) as a frozen training-time demasker.

    Used for the alternation rounds, where the demasker being fine-tuned has no ONNX file yet.
    """

    def __init__(self, checkpoint: Path, device: torch.device | str = "cpu") -> None:
        from demasked_ros.training.demasker_model import DemaskerNet

        if not Path(checkpoint).is_file():
            raise TrainingDataError(f"demasker checkpoint not found: {checkpoint}")
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        widths = tuple(state.get("args", {}).get("widths", (16, 32, 64, 96)))
        self.model = DemaskerNet(widths)
        self.model.load_state_dict(state["model"])
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    @torch.no_grad()
    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Fill on the torch model (padded to its stride with masked pixels, cropped back)."""
        from demasked_ros.training.demasker_train import demask_full_frames

        return demask_full_frames(self.model, images, visible, self.device)


def make_filler(spec: str, threads: int = 1) -> Filler:
    """A training-time demasker: ``telea``, ``ns``, ``solid``, ``default``/``learned`` (the shipped
    ONNX demasker), a path to a demasker ``.onnx`` file or to a ``demasker_train`` ``.pt`` checkpoint."""
    if spec.endswith(".pt"):
        return TorchCheckpointFiller(Path(spec))
    if spec.endswith(".onnx"):
        from demasked_ros.engines.learned_demasker import LearnedDemasker

        return LearnedDemasker(spec, threads=threads)
    from demasked_ros.engines.errors import EngineError
    from demasked_ros.engines.factory import make_demasker

    try:
        return make_demasker("learned" if spec == "default" else spec, threads=threads)
    except EngineError as error:
        raise TrainingDataError(str(error)) from error


def masked_copies(images: np.ndarray, visible: np.ndarray, filler: Filler) -> np.ndarray:
    """Branch inputs: image ``i // n`` hidden by ``visible[i]`` then filled (n = masks per image).

    Masking happens first, on the pixels the threat model speaks of; the filler only ever sees the
    zeroed copy (soundness rule 1 holds in training too, so what is learnt is what is deployed).
    """
    per_image = visible.shape[0] // images.shape[0]
    repeated = np.repeat(images, per_image, axis=0)
    hidden = np.where(visible[..., None], repeated, np.uint8(0))
    return np.ascontiguousarray(filler.demask(hidden, visible))


def branch_inputs(images: np.ndarray, families: BranchFamilies, filler: Filler, rng: np.random.Generator,
                  branches: int = 1, one_mode: bool = False) -> np.ndarray:
    """The clean batch followed by its masked+demasked copies, image-major (the layout
    :func:`consistency_loss` expects): ``branches`` draws per image of one copy per mode (or of one
    random mode with ``one_mode``). ``branches=0`` returns the clean batch."""
    if branches <= 0:
        return images
    batch, height, width = images.shape[:3]
    # Masks are drawn i.i.d., so pairing them with images in draw order is as good as any;
    # masked_copies makes copy j the copy of image j // per_image (image-major).
    visible = np.concatenate([draw_branch_masks(families, batch, height, width, rng, one_mode)
                              for _ in range(branches)])
    return np.concatenate([images, masked_copies(images, visible, filler)])


def consistency_loss(clean_logits: torch.Tensor, branch_logits: torch.Tensor, labels: torch.Tensor,
                     class_weight: torch.Tensor | None, ce_weight: float, kl_weight: float,
                     ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, dict[str, float]]:
    """CE(clean) + ce_weight * CE(branches) + kl_weight * KL(stop-grad clean || branches).

    ``branch_logits`` holds ``n`` branches per image, image-major (``B * n x C x H x W``); the KL is
    averaged over non-void pixels. Returns the loss and its parts (floats, for the log).
    """
    ce_clean = F.cross_entropy(clean_logits, labels, weight=class_weight, ignore_index=ignore_index)
    parts = {"ce_clean": float(ce_clean.detach())}
    if branch_logits.shape[0] == 0:
        return ce_clean, parts
    per_image = branch_logits.shape[0] // clean_logits.shape[0]
    branch_labels = labels.repeat_interleave(per_image, dim=0)
    ce_branch = F.cross_entropy(branch_logits, branch_labels, weight=class_weight, ignore_index=ignore_index)
    target = F.softmax(clean_logits.detach(), dim=1).repeat_interleave(per_image, dim=0)
    log_target = F.log_softmax(clean_logits.detach(), dim=1).repeat_interleave(per_image, dim=0)
    kl_map = (target * (log_target - F.log_softmax(branch_logits, dim=1))).sum(dim=1)
    valid = (branch_labels != ignore_index).float()
    kl = (kl_map * valid).sum() / valid.sum().clamp(min=1.0)
    parts.update(ce_branch=float(ce_branch.detach()), kl=float(kl.detach()))
    return ce_clean + ce_weight * ce_branch + kl_weight * kl, parts


def branch_agreement(clean_logits: torch.Tensor, branch_logits: torch.Tensor) -> float:
    """Share of (branch, pixel) pairs whose argmax equals the clean argmax (a training-time proxy
    of the certified fraction; logged per epoch)."""
    if branch_logits.shape[0] == 0:
        return float("nan")
    per_image = branch_logits.shape[0] // clean_logits.shape[0]
    clean = clean_logits.argmax(1).repeat_interleave(per_image, dim=0)
    return float((branch_logits.argmax(1) == clean).float().mean())
