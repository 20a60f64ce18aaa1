"""Compact CPU-friendly segmentation network used as the project's default segmenter.

Why this shape: the default segmenter runs K times per frame (once per masked branch) on a
shared CPU, so it must be cheap at 480x360, and it is trained from scratch on 367 CamVid frames
in about an hour and a half of one CPU core. Plain 3x3 convolutions are faster per FLOP than
depthwise ones in PyTorch's CPU backward pass, so the trunk is a small ResNet-like encoder with
dilated blocks for context, a global-pooling branch and a two-level skip decoder (BiSeNet /
ESPNet class, well under 1 M parameters).

``CompactSegNet`` works at its native resolution and returns logits at its input size.
``FullResolutionSegNet`` wraps it for deployment: it averages the full-resolution frame down by
``downscale`` (2 x 2 area average, i.e. the same as ``cv2.INTER_AREA`` at factor 2), runs the
trunk and upsamples logits back to the input size. Resizing therefore happens inside the
segmenter, after demasking, never before masking.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 (or k x k) convolution + batch norm + ReLU."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, dilation: int = 1
    ) -> None:
        padding = dilation * (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with an identity shortcut; ``dilation`` widens the receptive field."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(channels, channels, dilation=dilation)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update: relu(x + bn(conv(relu(bn(conv(x))))))."""
        return F.relu(x + self.bn2(self.conv2(self.conv1(x))))


class CompactSegNet(nn.Module):
    """Encoder (strides 2, 4, 8) + context block + skip decoder; logits at the input size.

    ``widths`` are the channel counts at strides 2, 4 and 8; ``context_dilations`` the dilations
    of the residual blocks at stride 8 (the cheapest resolution, where most capacity sits).
    """

    def __init__(
        self,
        num_classes: int = 11,
        widths: Sequence[int] = (24, 48, 96),
        context_dilations: Sequence[int] = (1, 2, 4, 8, 1, 2),
        decoder_width: int = 48,
    ) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.num_classes = num_classes
        self.stage1 = ConvBNReLU(3, w1, stride=2)
        self.stage2 = nn.Sequential(ConvBNReLU(w1, w2, stride=2), ResidualBlock(w2))
        self.stage3 = nn.Sequential(
            ConvBNReLU(w2, w3, stride=2), *[ResidualBlock(w3, d) for d in context_dilations]
        )
        self.global_context = nn.Sequential(nn.Conv2d(w3, w3, 1, bias=False), nn.BatchNorm2d(w3))
        self.fuse2 = nn.Sequential(
            ConvBNReLU(w3 + w2, decoder_width, kernel=1), ConvBNReLU(decoder_width, decoder_width)
        )
        self.fuse1 = ConvBNReLU(decoder_width + w1, decoder_width)
        self.classifier = nn.Conv2d(decoder_width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised image B x 3 x H x W -> logits B x num_classes x H x W."""
        size = x.shape[-2:]
        x1 = self.stage1(x)
        x2 = self.stage2(x1)
        x3 = self.stage3(x2)
        pooled = self.global_context(torch.mean(x3, dim=(2, 3), keepdim=True))
        x3 = F.relu(x3 + pooled)
        up = F.interpolate(x3, size=x2.shape[-2:], mode="bilinear", align_corners=False)
        d2 = self.fuse2(torch.cat([up, x2], dim=1))
        up = F.interpolate(d2, size=x1.shape[-2:], mode="bilinear", align_corners=False)
        d1 = self.fuse1(torch.cat([up, x1], dim=1))
        logits = self.classifier(d1)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


#: Per-channel RGB mean and std in 0..255 units used to normalise inputs (ImageNet statistics).
IMAGE_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGE_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8/float RGB B x 3 x H x W in 0..255 -> ``(x - IMAGE_MEAN) / IMAGE_STD`` float32."""
    mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.float() - mean) / std


class FullResolutionSegNet(nn.Module):
    """Deployment wrapper: area-downscale by ``downscale``, run the trunk, upsample logits back.

    With ``normalize_input`` the wrapper also applies :func:`normalize`, so that its input is raw
    RGB in 0..255 (what the ONNX export uses when the caller's mean/std are 0/1).
    """

    def __init__(self, net: nn.Module, downscale: int = 2, normalize_input: bool = False) -> None:
        super().__init__()
        self.net = net
        self.downscale = downscale
        self.normalize_input = normalize_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Full-resolution image B x 3 x H x W (normalised, or 0..255 with normalize_input) -> logits."""
        size = x.shape[-2:]
        if self.normalize_input:
            x = normalize(x)
        small = F.avg_pool2d(x, self.downscale) if self.downscale > 1 else x
        logits = self.net(small)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (what the model card reports)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
