"""Losses of the learned demasker: masked-pixel L1, and the segmentation-aware and task-driven terms.

Split from :mod:`demasked_ros.training.demasker_train` (which re-exports these names). The base loss
counts masked pixels only (visible pixels are copied through anyway); the optional terms run a frozen
``segmenter_train`` segmenter on the fill, so the demasker is pushed towards fills the segmenter labels
as it labels the truth or the clean frame (what %C counts), not merely towards a high PSNR.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as functional

from demasked_ros.training.data import IGNORE_INDEX, TrainingDataError


def masked_loss(output: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """L1 + 0.2 x gradient-L1, both over masked pixels only (gradients between two masked pixels)."""
    hidden = 1.0 - visible
    denominator = hidden.sum().clamp(min=1.0) * 3
    l1 = ((output - target).abs() * hidden).sum() / denominator
    grad = output.new_zeros(())
    for dim in (2, 3):
        d_out, d_tgt = torch.diff(output, dim=dim), torch.diff(target, dim=dim)
        length = hidden.shape[dim] - 1
        both_hidden = hidden.narrow(dim, 1, length) * hidden.narrow(dim, 0, length)
        grad = grad + ((d_out - d_tgt).abs() * both_hidden).sum() / denominator
    return l1 + 0.2 * grad


def load_frozen_segmenter(checkpoint: Path, device: torch.device) -> torch.nn.Module:
    """The segmenter of a ``segmenter_train`` checkpoint, frozen, taking RGB in [0, 1]."""
    from demasked_ros.training.segmenter_model import FullResolutionSegNet, build_trunk

    if not checkpoint.is_file():
        raise TrainingDataError(f"segmenter checkpoint not found: {checkpoint}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = state["config"]
    net = build_trunk(config)
    net.load_state_dict(state["model"])
    model = FullResolutionSegNet(net, downscale=config["downscale"], normalize_input=True).to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def segmentation_loss(
    segmenter: torch.nn.Module, output: torch.Tensor, labels: torch.Tensor, visible: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the frozen segmenter on the demasked crop vs the ground truth, averaged
    over masked, non-void pixels: it pushes the demasker towards fills the segmenter labels right
    (what %C counts), not merely towards low PSNR."""
    logits = segmenter(output * 255.0)
    per_pixel = functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
    weight = (1.0 - visible[:, 0]) * (labels != IGNORE_INDEX).float()
    return (per_pixel * weight).sum() / weight.sum().clamp(min=1.0)


def disagreement_loss(segmenter: torch.nn.Module, output: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Task-driven objective: KL(seg(clean) || seg(demasked)) of the frozen segmenter, mean over
    pixels. Needs no labels: it asks the demasker for fills that the segmenter labels as it labels
    the clean frame, which is exactly what makes the K branches agree (what %C counts), rather
    than for fills that look right pixel by pixel (PSNR)."""
    with torch.no_grad():
        clean_logits = segmenter(clean * 255.0)
        target, log_target = functional.softmax(clean_logits, 1), functional.log_softmax(clean_logits, 1)
    log_branch = functional.log_softmax(segmenter(output * 255.0), 1)
    return (target * (log_target - log_branch)).sum(1).mean()

