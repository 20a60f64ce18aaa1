"""The default segmenter's architecture, re-exported for the training code.

It lives in :mod:`demasked_ros.engines.segmenter_net` (one definition, shared with the torch twin
in :mod:`demasked_ros.engines.torch_twins`); this name is kept so existing imports keep working.
"""

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
           "count_parameters", "normalize"]
