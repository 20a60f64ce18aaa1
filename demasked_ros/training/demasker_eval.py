"""Evaluation and export of the learned demasker: masked-pixel PSNR against TELEA, full-frame
inference, and the ONNX export checked against torch.

Split from :mod:`demasked_ros.training.demasker_train` (which re-exports these names). The PSNR is
measured per default mask family on full validation frames, with the classical TELEA inpainting as
the baseline; the export writes the stride metadata the engine reads and returns max |ORT - torch|.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as functional

from demasked_ros.engines.demasker_net import (
    MODEL_STRIDE,
    ONNX_INPUT_NAMES,
    ONNX_OUTPUT_NAME,
    DemaskerNet,
)
from demasked_ros.engines.learned_demasker import STRIDE_METADATA_KEY
from demasked_ros.training.demasker_samples import DEFAULT_FAMILIES, to_tensors


def masked_psnr(prediction: np.ndarray, target: np.ndarray, visible: np.ndarray) -> float:
    """PSNR (dB, 8-bit) over the masked pixels of one image; ``inf`` when they match exactly."""
    hidden = ~visible
    if not hidden.any():
        return math.inf
    diff = prediction[hidden].astype(np.float64) - target[hidden].astype(np.float64)
    mse = float(np.mean(diff**2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def telea_fill(image: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The classical baseline (as ``TeleaDemasker``): cv2.inpaint TELEA, radius 3."""
    zeroed = np.where(visible[..., None], image, 0).astype(np.uint8)
    return cv2.inpaint(zeroed, (~visible).astype(np.uint8) * 255, 3.0, cv2.INPAINT_TELEA)


@torch.no_grad()
def demask_full_frames(
    model: DemaskerNet, images: np.ndarray, visible: np.ndarray, device: torch.device
) -> np.ndarray:
    """Run the torch model on full frames (padded with masked pixels to the stride, cropped back)."""
    height, width = images.shape[1:3]
    pad_h, pad_w = (-height) % MODEL_STRIDE, (-width) % MODEL_STRIDE
    image, mask = to_tensors(images, visible, device)
    image = functional.pad(image, (0, pad_w, 0, pad_h))
    mask = functional.pad(mask, (0, pad_w, 0, pad_h))
    out = model(image, mask)[:, :, :height, :width]
    out_u8 = (out * 255.0).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
    return np.where(visible[..., None], images, out_u8)


def evaluate_psnr(
    model: DemaskerNet | None,
    images: np.ndarray,
    families: dict[str, np.ndarray],
    device: torch.device,
) -> dict[str, float]:
    """Mean masked-pixel PSNR per default family over ``images`` (TELEA when ``model`` is None)."""
    results: dict[str, float] = {}
    for name in DEFAULT_FAMILIES:
        masks = families[name]
        scores = []
        for image in images:
            batch = np.repeat(image[None], masks.shape[0], axis=0)
            if model is None:
                filled = np.stack([telea_fill(image, m) for m in masks])
            else:
                filled = demask_full_frames(model, batch, masks, device)
            scores += [masked_psnr(f, image, m) for f, m in zip(filled, masks, strict=True)]
        results[name] = float(np.mean(scores))
    return results


def export_onnx(model: DemaskerNet, path: Path, height: int = 368, width: int = 480) -> float:
    """Export to ONNX (opset 17, dynamic batch / height / width); returns max |ORT - torch|."""
    import onnx
    import onnxruntime as ort

    model = model.cpu().eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, height, width, generator=generator)
    mask = (torch.rand(2, 1, height, width, generator=generator) > 0.6).float()
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (image, mask),
            str(path),
            input_names=list(ONNX_INPUT_NAMES),
            output_names=[ONNX_OUTPUT_NAME],
            opset_version=17,
            dynamic_axes={name: dynamic for name in (*ONNX_INPUT_NAMES, ONNX_OUTPUT_NAME)},
            dynamo=False,
        )
    graph = onnx.load(str(path))
    for key, value in ((STRIDE_METADATA_KEY, str(MODEL_STRIDE)), ("demasked_ros.widths", str(model.widths))):
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {ONNX_INPUT_NAMES[0]: image.numpy(), ONNX_INPUT_NAMES[1]: mask.numpy()})
    with torch.no_grad():
        torch_out = model(image, mask).numpy()
    return float(np.abs(onnx_out - torch_out).max())

