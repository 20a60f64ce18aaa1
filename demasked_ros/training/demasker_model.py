"""The learned demasker's architecture, re-exported for the training code.

It lives in :mod:`demasked_ros.engines.demasker_net` (one definition, shared with the torch twin
in :mod:`demasked_ros.engines.torch_twins`); this name is kept so existing imports keep working.
"""

from demasked_ros.engines.demasker_net import (
    MODEL_STRIDE,
    ONNX_INPUT_NAMES,
    ONNX_OUTPUT_NAME,
    DemaskerNet,
    count_parameters,
)

__all__ = ["MODEL_STRIDE", "ONNX_INPUT_NAMES", "ONNX_OUTPUT_NAME", "DemaskerNet", "count_parameters"]
