"""Adaptive attacks on DEMASKED SMOOTHING: objectives through the demasker and segmenter of every
branch that can see the patch (they try to break Theorems 1 and 2).

* Recovery: on the pixels certified on the clean frame, push every seeing branch towards one common
  wrong class (the runner-up of the clean vote), i.e. try to overturn the unanimous vote. At most T
  branches see a patch, so this must fail for a sound certifier; it does produce the strongest
  coherent disagreement the alarm then has to catch.
* Detection: change f(x) while keeping every branch in agreement with it. Branches whose band hides
  the patch cannot be changed, so the best an attacker can do is move f(x) *and* all seeing branches
  to the label the hiding branches already give (where that differs from f's clean label), and to
  f's runner-up elsewhere.

``branch_sample`` optimises through a random subset of the seeing branches per step (an unbiased
estimate of the full objective, for CPUs); None uses all of them every step.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from demasked_ros.attacks.errors import AttackError
from demasked_ros.attacks.pgd import Objective
from demasked_ros.attacks.placement import Placement
from demasked_ros.attacks.torch_models import TorchPipeline, runner_up, seeing_branches
from demasked_ros.core.masks import MaskSet


def _sampler(count: int, sample: int | None, seed: int) -> tuple[torch.Generator, int]:
    if sample is not None and sample < 1:
        raise AttackError(f"branch_sample must be >= 1, got {sample}")
    return torch.Generator().manual_seed(seed), count if sample is None else min(sample, count)


def recovery_objective(pipeline: TorchPipeline, masks: MaskSet, placement: Placement, image: np.ndarray,
                       clean_labels: np.ndarray, clean_certified: np.ndarray,
                       branch_sample: int | None = None, seed: int = 0) -> Objective:
    """Loss (to minimise): cross-entropy of the seeing branches towards the clean vote's runner-up
    class, over the pixels certified on the clean frame."""
    if masks.mode != "recovery":
        raise AttackError(f"recovery objective needs recovery masks, got {masks.mode}")
    seeing = seeing_branches(masks.visible, placement.region(masks.height, masks.width))
    if not seeing or not clean_certified.any():
        raise AttackError("no branch sees this patch, or nothing is certified: nothing to attack")
    visible = pipeline.visibility(masks.visible[seeing])
    labels = torch.from_numpy(clean_labels.astype(np.int64)).to(pipeline.device)
    with torch.no_grad():
        mean_logits = pipeline.branch_logits(pipeline.tensor(image), visible).mean(dim=0)
    target = runner_up(mean_logits, labels)[None]
    weight = torch.from_numpy(clean_certified).to(pipeline.device).float()[None]
    generator, count = _sampler(len(seeing), branch_sample, seed)

    def loss(frame: torch.Tensor) -> torch.Tensor:
        chosen = torch.randperm(len(seeing), generator=generator)[:count].to(pipeline.device)
        logits = pipeline.branch_logits(frame, visible[chosen])
        ce = F.cross_entropy(logits, target.expand(len(chosen), -1, -1), reduction="none")
        return (ce * weight).sum() / (weight.sum() * len(chosen))

    return loss


def detection_objective(pipeline: TorchPipeline, masks: MaskSet, placement: Placement, image: np.ndarray,
                        clean_labels: np.ndarray, clean_branch_labels: np.ndarray,
                        branch_sample: int | None = None, seed: int = 0) -> Objective:
    """Loss (to minimise): cross-entropy of f and of the seeing branches towards one target label
    per pixel (the hiding branches' clean label where it differs from f's, else f's runner-up)."""
    if masks.mode != "detection":
        raise AttackError(f"detection objective needs detection masks, got {masks.mode}")
    region = placement.region(masks.height, masks.width)
    seeing = seeing_branches(masks.visible, region)
    hiding = [k for k in range(masks.k) if k not in seeing]
    if not hiding:  # cannot happen with verified masks (Lemma 1); guards a wrong mask set
        raise AttackError("no branch hides this patch: the detection masks do not cover it")
    labels = torch.from_numpy(clean_labels.astype(np.int64)).to(pipeline.device)
    with torch.no_grad():
        f_clean = pipeline.f_logits(pipeline.tensor(image))[0]
    hidden_label = torch.from_numpy(clean_branch_labels[hiding[0]].astype(np.int64)).to(pipeline.device)
    target = torch.where(hidden_label != labels, hidden_label, runner_up(f_clean, labels))[None]
    visible = pipeline.visibility(masks.visible[seeing]) if seeing else None
    generator, count = _sampler(max(len(seeing), 1), branch_sample, seed)

    def loss(frame: torch.Tensor) -> torch.Tensor:
        total = F.cross_entropy(pipeline.f_logits(frame), target)
        if visible is not None:
            chosen = torch.randperm(len(seeing), generator=generator)[:count].to(pipeline.device)
            logits = pipeline.branch_logits(frame, visible[chosen])
            total = total + F.cross_entropy(logits, target.expand(len(chosen), -1, -1))
        return total

    return loss
