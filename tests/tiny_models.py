"""Tiny deterministic models for fast tests (no weights shipped, nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from demasked_ros.engines.segmenters import CallableSegmenter

CLASS_NAMES = ["dark", "red", "green", "blue"]


def colour_rule(images: np.ndarray) -> np.ndarray:
    """Label = dominant channel (1..3), or 0 where the pixel is dark; a local, deterministic rule."""
    channels = images.astype(np.int32)
    labels = channels.argmax(axis=-1) + 1
    return np.where(channels.sum(axis=-1) < 60, 0, labels).astype(np.int32)


def colour_segmenter() -> CallableSegmenter:
    return CallableSegmenter(colour_rule, CLASS_NAMES)


def write_conv_model(path: Path, num_classes: int = 4, seed: int = 0, kernel: int = 3,
                     output: str = "logits", stride: int = 1) -> Path:
    """A one-layer conv net as ONNX: B x 3 x H x W float -> logits B x C x H/stride x W/stride."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(num_classes, 3, kernel, kernel)).astype(np.float32)
    bias = rng.normal(size=(num_classes,)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["logits"], pads=[kernel // 2] * 4,
                              strides=[stride, stride])]
    out_name, out_type = "logits", TensorProto.FLOAT
    out_shape: list[str | int] = ["B", num_classes, "h", "w"]
    if output == "labels":
        nodes.append(helper.make_node("ArgMax", ["logits"], ["labels"], axis=1, keepdims=0))
        out_name, out_type, out_shape = "labels", TensorProto.INT64, ["B", "h", "w"]
    graph = helper.make_graph(
        nodes, "tiny_seg",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", 3, "H", "W"])],
        [helper.make_tensor_value_info(out_name, out_type, out_shape)],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
