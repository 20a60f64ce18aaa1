"""Projected sign-gradient descent on patch pixels, and the undefended objectives on f.

The only free variables are the pixels inside the placement's rectangles (values 0..255); every
step moves them by ``step_size(t) * sign(gradient)`` and clips them to 0..255, which is the
projection onto the threat model. Several random restarts run; the patch with the lowest loss on
the *quantised* (uint8) frame wins, since that is what a camera delivers.

Objectives return a scalar loss to minimise from the attacked frame (1 x 3 x H x W float, 0..255).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from demasked_ros.attacks.errors import AttackError
from demasked_ros.attacks.placement import Placement, paste
from demasked_ros.attacks.torch_models import TorchPipeline

Objective = Callable[[torch.Tensor], torch.Tensor]
SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class PGDConfig:
    """Step budget and schedule.

    Attributes:
        steps: gradient steps per restart (>= 100 by default, as the issue asks).
        restarts: independent random initialisations; the best one is kept.
        step_size: first step in pixel units (0..255).
        final_step_size: last step (cosine and step schedules decay to it).
        schedule: ``cosine`` (smooth decay), ``step`` (halve at 50 % and 75 %) or ``constant``.
        seed: random initialisation seed.
    """

    steps: int = 100
    restarts: int = 1
    step_size: float = 24.0
    final_step_size: float = 1.0
    schedule: str = "cosine"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.restarts < 1:
            raise AttackError(f"steps must be >= 0 and restarts >= 1, got {self.steps}, {self.restarts}")
        if self.schedule not in SCHEDULES:
            raise AttackError(f"unknown schedule {self.schedule!r}; choose one of {list(SCHEDULES)}")
        if self.step_size <= 0 or self.final_step_size <= 0:
            raise AttackError("step sizes must be positive")

    def step(self, t: int) -> float:
        """Step size at step ``t`` (0-based)."""
        if self.schedule == "constant" or self.steps <= 1:
            return self.step_size
        progress = t / (self.steps - 1)
        if self.schedule == "cosine":
            weight = 0.5 * (1 + math.cos(math.pi * progress))
            return self.final_step_size + (self.step_size - self.final_step_size) * weight
        factor = 1.0 if progress < 0.5 else 0.5 if progress < 0.75 else 0.25
        return max(self.final_step_size, self.step_size * factor)


@dataclass
class PGDResult:
    """The best patch found: uint8 contents per patch, its loss and the loss trace of that restart."""

    contents: list[np.ndarray]
    loss: float
    history: list[float] = field(default_factory=list)


def compose(image: torch.Tensor, placement: Placement, contents: torch.Tensor) -> torch.Tensor:
    """``image`` with each patch rectangle replaced by its content (differentiable in ``contents``)."""
    out = image.clone()
    for index, (y, x, h, w) in enumerate(placement.boxes):
        out[:, :, y:y + h, x:x + w] = contents[index][None]
    return out


def optimise_patch(pipeline: TorchPipeline, image: np.ndarray, placement: Placement,
                   objective: Objective, config: PGDConfig | None = None,
                   initial: Sequence[np.ndarray] | None = None) -> PGDResult:
    """Minimise ``objective`` over the patch pixels with sign-gradient steps and restarts.

    ``initial`` (uint8 contents) seeds the first restart instead of uniform noise.
    """
    config = config or PGDConfig()
    base = pipeline.tensor(image)
    h, w = placement.size
    generator = torch.Generator().manual_seed(config.seed)
    best: PGDResult | None = None
    for restart in range(config.restarts):
        if restart == 0 and initial is not None:
            start = torch.from_numpy(np.stack([c.transpose(2, 0, 1) for c in initial])).float()
        else:
            start = torch.rand((len(placement.boxes), 3, h, w), generator=generator) * 255.0
        contents = start.to(pipeline.device)
        history: list[float] = []
        for t in range(config.steps):
            contents.requires_grad_(True)
            loss = objective(compose(base, placement, contents))
            (gradient,) = torch.autograd.grad(loss, contents)
            history.append(float(loss.detach()))
            with torch.no_grad():
                contents = (contents - config.step(t) * gradient.sign()).clamp_(0.0, 255.0)
        quantised = contents.detach().round().clamp(0, 255)
        with torch.no_grad():
            final = float(objective(compose(base, placement, quantised)))
        if best is None or final < best.loss:
            best = PGDResult([c.permute(1, 2, 0).to("cpu", torch.uint8).numpy() for c in quantised],
                             final, history)
    assert best is not None  # restarts >= 1
    return best


def attacked_frame(image: np.ndarray, placement: Placement, result: PGDResult) -> np.ndarray:
    """The uint8 frame with the optimised patch pasted in (pixels outside the patch untouched)."""
    return paste(image, placement, result.contents)


def untargeted(pipeline: TorchPipeline, clean_labels: np.ndarray, cap: float = 4.0) -> Objective:
    """Maximise f's cross-entropy w.r.t. its clean labels, each pixel's term capped at ``cap``
    (a pixel already flipped with confidence stops pulling, so the patch spreads its effect)."""
    target = torch.from_numpy(clean_labels.astype(np.int64)).to(pipeline.device)[None]

    def loss(frame: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(pipeline.f_logits(frame), target, reduction="none")
        return -ce.clamp(max=cap).mean()

    return loss


def erase_class(pipeline: TorchPipeline, clean_labels: np.ndarray, cls: int, cap: float = 4.0) -> Objective:
    """Make f stop predicting ``cls`` where it predicted it on the clean frame (e.g. pedestrians)."""
    where = torch.from_numpy(clean_labels == cls).to(pipeline.device)[None]
    if not bool(where.any()):
        raise AttackError(f"class {cls} does not occur in f(x) on this frame: nothing to erase")
    target = torch.full_like(where, cls, dtype=torch.long)

    def loss(frame: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(pipeline.f_logits(frame), target, reduction="none")
        return -(ce.clamp(max=cap) * where).sum() / where.sum()

    return loss


def paint_class(pipeline: TorchPipeline, clean_labels: np.ndarray, cls: int) -> Objective:
    """Make f predict ``cls`` on as many pixels as possible (e.g. paint a car onto the road)."""
    elsewhere = torch.from_numpy(clean_labels != cls).to(pipeline.device)[None]
    target = torch.full_like(elsewhere, cls, dtype=torch.long)

    def loss(frame: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(pipeline.f_logits(frame), target, reduction="none")
        return (ce.clamp(min=0.05) * elsewhere).sum() / elsewhere.sum().clamp(min=1)

    return loss
