"""The default segmenter's architecture, re-exported for the training code, and the trunk factory.

The architecture lives in :mod:`demasked_ros.engines.segmenter_net` (one definition, shared with
the torch twin in :mod:`demasked_ros.engines.torch_twins`); this name is kept so existing imports
keep working. :func:`build_trunk` picks the trunk a training checkpoint describes.
"""

from torch import nn

from demasked_ros.engines.segmenter_net import (
    IMAGE_MEAN,
    IMAGE_STD,
    CompactSegNet,
    ConvBNReLU,
    FullResolutionSegNet,
    ResidualBlock,
    count_parameters,
    normalize,
)

__all__ = ["IMAGE_MEAN", "IMAGE_STD", "CompactSegNet", "ConvBNReLU", "FullResolutionSegNet", "ResidualBlock",
           "build_trunk", "count_parameters", "normalize"]


def build_trunk(config: dict[str, object], num_classes: int = 11, pretrained: bool = False) -> nn.Module:
    """The trunk a checkpoint's ``config`` describes: ``arch`` ``compact`` (default, from scratch)
    or ``lite0`` (truncated EfficientNet-Lite0; ``pretrained`` loads the ImageNet weights, else
    the architecture only, for loading a checkpoint). One place, used by training and export."""
    arch = str(config.get("arch", "compact"))
    if arch == "compact":
        widths = tuple(int(w) for w in config.get("widths", (24, 48, 96)))  # type: ignore[attr-defined]
        return CompactSegNet(num_classes, widths=widths,
                             decoder_width=int(config.get("decoder_width", 48)))  # type: ignore[call-overload]
    if arch == "lite0":
        from demasked_ros.training.pretrained_model import LiteSegNet

        return LiteSegNet(num_classes, stride=int(config.get("backbone_stride", 16)),  # type: ignore[call-overload]
                          decoder_width=int(config.get("decoder_width", 64)),  # type: ignore[call-overload]
                          pretrained=pretrained)
    raise ValueError(f"unknown segmenter arch {arch!r} (compact, lite0)")
