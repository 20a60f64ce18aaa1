"""The differentiable pipeline the attacks optimise through: torch twins of the segmenter and demasker.

Contract (the torch twins of the default models in ``demasked_ros.engines.torch_twins``, or any
modules with the same signatures):

* segmenter: float32 ``B x 3 x H x W`` RGB in 0..255 -> logits ``B x C x H x W`` (normalisation inside);
* demasker: ``(images with masked pixels zero, visible B x 1 x H x W in {0, 1})`` -> ``B x 3 x H x W``
  in 0..255, visible pixels equal to the input.

A branch here is built exactly like the engine builds it: mask first (multiply by the visibility),
then demask, then segment. The attacks only use these models to *find* patches; every attacked frame
is then judged by the product pipeline (:mod:`.audit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from demasked_ros.attacks.errors import AttackError


class TorchPipeline:
    """f and the masked branches as differentiable torch functions on one device."""

    def __init__(self, segmenter: nn.Module, demasker: nn.Module | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.segmenter = segmenter.to(self.device).eval()
        self.demasker = None if demasker is None else demasker.to(self.device).eval()
        for module in (self.segmenter, self.demasker):
            if module is not None:
                for parameter in module.parameters():
                    parameter.requires_grad_(False)

    @classmethod
    def default(cls, device: str = "cpu") -> TorchPipeline:
        """The torch twins of the packaged models (``engines.torch_twins``, contract 2)."""
        try:
            from demasked_ros.engines import torch_twins  # type: ignore[attr-defined,unused-ignore]
        except ImportError as error:
            raise AttackError("the torch twins of the default models (demasked_ros.engines.torch_twins) "
                              "are not installed; pass your own torch segmenter/demasker") from error
        try:
            return cls(torch_twins.segmenter_module(device=device),
                       torch_twins.demasker_module(device=device), device)
        except Exception as error:  # missing weights, bad state dict
            raise AttackError(f"cannot load the torch twins: {error}") from error

    @classmethod
    def for_models(cls, segmenter: str, demasker: str, device: str = "cpu",
                   need_demasker: bool = True) -> TorchPipeline:
        """The torch twins of the models the product certifies with (``--segmenter``/``--demasker``).

        ``default`` is the packaged twin; an ``.onnx`` file of the default architecture (a fold model,
        a retrained default) gets its twin built from its weights. Anything else has no twin here, and
        a gradient attack on it would silently optimise *another* model, so it is refused
        (:class:`AttackError`); the demasker only when ``need_demasker`` (the adaptive attack: PGD on f
        never runs it). Check the twin against the product with :meth:`check_twin`.
        """
        try:
            from demasked_ros.engines import torch_twins  # type: ignore[attr-defined,unused-ignore]
            from demasked_ros.engines.errors import EngineError
        except ImportError as error:
            raise AttackError(f"the torch twins (engines.torch_twins) cannot load: {error}") from error
        try:
            if segmenter == "default":
                seg_module = torch_twins.segmenter_module(device=device)
            elif segmenter.endswith(".onnx"):
                seg_module = torch_twins.segmenter_module_from_onnx(Path(segmenter), device)
            else:
                raise AttackError(f"--segmenter {segmenter}: gradient attacks (pgd, adaptive) need a torch "
                                  "twin, which exists for 'default' and .onnx files of its architecture; "
                                  "use --attack random or natural for other models")
            dem_module: nn.Module | None = None
            if demasker in ("default", "learned"):
                dem_module = torch_twins.demasker_module(device=device)
            elif demasker.endswith(".onnx"):
                dem_module = torch_twins.demasker_module_from_onnx(Path(demasker), device)
            elif need_demasker:
                raise AttackError(f"--demasker {demasker}: the adaptive attack differentiates through the "
                                  "demasker and has a torch twin only for the learned one ('default')")
        except EngineError as error:
            raise AttackError(f"no torch twin for the models: {error}") from error
        return cls(seg_module, dem_module, device)

    def check_twin(self, image: np.ndarray, product_labels: np.ndarray, min_agreement: float = 0.99) -> float:
        """The fraction of ``image``'s pixels where the twin's f equals the product's labels.

        Raises :class:`AttackError` below ``min_agreement``: the attack would optimise a model other than
        the one the product certifies with (same convolutions, other preprocessing or head).
        """
        agreement = float((self.labels(image) == product_labels).mean())
        if agreement < min_agreement:
            raise AttackError(f"the torch twin agrees with the product segmenter on only "
                              f"{100 * agreement:.1f} % of the pixels: it is not the same model")
        return agreement

    def tensor(self, image: np.ndarray) -> torch.Tensor:
        """H x W x 3 uint8 -> 1 x 3 x H x W float32 on the device."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise AttackError(f"frames must be H x W x 3 uint8, got {image.shape} {image.dtype}")
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None].to(self.device)

    def visibility(self, visible: np.ndarray) -> torch.Tensor:
        """K x H x W bool -> K x 1 x H x W float {0, 1} on the device."""
        return torch.from_numpy(np.ascontiguousarray(visible)).float()[:, None].to(self.device)

    def f_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of the plain segmentation f."""
        return self.segmenter(images)

    def branch_logits(self, image: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Logits of the branches with visibilities ``visible`` (K x 1 x H x W) of one image."""
        if self.demasker is None:
            raise AttackError("this pipeline has no demasker: adaptive attacks need one")
        masked = image * visible  # masking first, as the engine does
        return self.segmenter(self.demasker(masked, visible))

    @torch.no_grad()
    def labels(self, image: np.ndarray) -> np.ndarray:
        """argmax f(x) as H x W int64 (for targets and checks)."""
        return self.f_logits(self.tensor(image)).argmax(dim=1)[0].cpu().numpy()


def seeing_branches(visible: np.ndarray, region: np.ndarray) -> list[int]:
    """Branches with at least one visible pixel inside ``region`` (the ones a patch there can reach)."""
    return [int(k) for k in np.flatnonzero((visible & region[None]).any(axis=(1, 2)))]


def runner_up(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per pixel, the best class other than ``labels`` (logits C x H x W, labels H x W)."""
    masked = logits.clone()
    masked.scatter_(0, labels[None], float("-inf"))
    return masked.argmax(dim=0)


def class_index(names: Sequence[str], name: str) -> int:
    """Index of a class given by name or number (AttackError when unknown)."""
    if name.isdigit() and int(name) < len(names):
        return int(name)
    if name in names:
        return list(names).index(name)
    raise AttackError(f"unknown class {name!r}; choose one of {list(names)}")
