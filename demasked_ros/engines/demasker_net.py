"""A small encoder-decoder that demasks (inpaints) the masked regions of a masked image.

Why it exists: DEMASKED SMOOTHING segments K masked copies of every frame; the better the masked
pixels are reconstructed, the more of the frame the segmenter gets right in every branch, and the
more gets certified. OpenCV's TELEA smears the borders of the visible stripes across the gaps; this
network learns scene priors (sky on top, road below, facades, cars) from CamVid instead.

Soundness by construction (defence in depth; the engine does the same again outside the network):

* the network only ever sees ``image * visible``: masked values are zeroed first thing;
* it runs at half resolution internally, with a mask-aware 2x2 average (a visible-weighted mean,
  so masked zeros never bleed into the downsampled colours) -- sound because the input is
  already masked at full resolution before anything is downsampled;
* visible pixels are copied through: ``output = visible * image + (1 - visible) * prediction``.

Input: ``image`` B x 3 x H x W float in [0, 1] (RGB), ``visible`` B x 1 x H x W float in {0, 1};
H and W must be multiples of :data:`MODEL_STRIDE` (callers pad with masked pixels and crop back).
Output: B x 3 x H x W float in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional
from torch import nn

#: H and W of the network input must be multiples of this (2x internal downsampling, then 3 more
#: stride-2 stages).
MODEL_STRIDE = 16

#: Names of the ONNX graph's inputs and output (the engine relies on them).
ONNX_INPUT_NAMES = ("image", "visible")
ONNX_OUTPUT_NAME = "demasked"


def _conv(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3x3 convolution + batch norm + ReLU (batch norm folds into the conv at ONNX export)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DemaskerNet(nn.Module):
    """Mask-aware U-Net that works at half resolution and composites at full resolution.

    ``widths`` are the channel counts of the four encoder levels (half, 1/4, 1/8 and 1/16 of the
    full resolution); the bottleneck adds dilated convolutions so that a pixel in the middle of a
    120-pixel-wide masked gap (recovery column masks hide 4 of every 5 block columns) still sees
    the visible stripes on both sides.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 96)) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.widths = widths
        self.stem = _conv(4, w1)
        self.down2 = nn.Sequential(_conv(w1, w2, stride=2), _conv(w2, w2))
        self.down3 = nn.Sequential(_conv(w2, w3, stride=2), _conv(w3, w3))
        self.down4 = nn.Sequential(_conv(w3, w4, stride=2), _conv(w4, w4))
        self.context = nn.Sequential(
            _conv(w4, w4, dilation=2), _conv(w4, w4, dilation=4), _conv(w4, w4, dilation=8)
        )
        self.up3 = _conv(w4 + w3, w3)
        self.up2 = _conv(w3 + w2, w2)
        self.up1 = _conv(w2 + w1, w1)
        self.head = nn.Conv2d(w1, 3, kernel_size=3, padding=1)

    def forward(self, image: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Demask ``image`` where ``visible`` is 0; see the module docstring for the contract."""
        visible = (visible > 0.5).to(image.dtype)
        masked = image * visible  # never read masked values, whatever the caller passed
        # Mask-aware 2x2 average: mean of the visible pixels in each 2x2 cell (0 where none).
        pooled_sum = functional.avg_pool2d(masked, 2)
        pooled_visible = functional.avg_pool2d(visible, 2)
        half = pooled_sum / pooled_visible.clamp(min=0.25)
        half_visible = (pooled_visible > 0).to(image.dtype)
        features_in = torch.cat(((half - 0.5) * half_visible, pooled_visible), dim=1)

        level1 = self.stem(features_in)
        level2 = self.down2(level1)
        level3 = self.down3(level2)
        level4 = self.context(self.down4(level3))
        x = self._up_cat(level4, level3)
        x = self.up3(x)
        x = self.up2(self._up_cat(x, level2))
        x = self.up1(self._up_cat(x, level1))
        prediction_half = self.head(x) + half  # residual over the (partially) known colours
        prediction = functional.interpolate(
            prediction_half, scale_factor=2.0, mode="bilinear", align_corners=False
        )
        prediction = prediction.clamp(0.0, 1.0)
        return masked + (1.0 - visible) * prediction

    @staticmethod
    def _up_cat(coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        upsampled = functional.interpolate(coarse, size=skip.shape[-2:], mode="nearest")
        return torch.cat((upsampled, skip), dim=1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (reported in the model card)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
