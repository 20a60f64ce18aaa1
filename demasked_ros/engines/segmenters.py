"""Segmenters: ONNX Runtime models and wrappers for any Python callable.

Preprocessing lives here, after demasking: resizing to the model's input size, channel order and
mean/std normalisation. Nothing computed from a whole unmasked frame is ever fed to a branch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.onnx_graph import check_inference_graph
from demasked_ros.engines.onnx_providers import check_active, resolve_providers

#: ImageNet statistics in 0-255 pixel units (the mmsegmentation convention).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def check_images(images: np.ndarray) -> None:
    """Raise :class:`EngineError` unless ``images`` is a B x H x W x 3 uint8 batch."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or images.shape[0] < 1:
        raise EngineError(f"segmenter input must be B x H x W x 3 uint8, got {images.shape} {images.dtype}")


def check_labels(labels: np.ndarray, images: np.ndarray, num_classes: int) -> np.ndarray:
    """Validate a segmenter's output against its input batch; returns it as a numpy array."""
    labels = np.asarray(labels)
    if labels.shape != images.shape[:3]:
        raise EngineError(f"segmenter returned shape {labels.shape}, expected {images.shape[:3]}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise EngineError(f"segmenter returned dtype {labels.dtype}, expected integer labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise EngineError(f"segmenter returned labels outside 0..{num_classes - 1}")
    return labels


class CallableSegmenter:
    """Wraps any ``fn(images B x H x W x 3 uint8) -> labels B x H x W`` as a :class:`Segmenter`."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], class_names: Sequence[str]) -> None:
        if not class_names:
            raise EngineError("a segmenter needs at least one class name")
        self.fn = fn
        self.class_names = list(class_names)

    def segment(self, images: np.ndarray) -> np.ndarray:
        """Calls the wrapped function and checks its output."""
        check_images(images)
        return check_labels(self.fn(images), images, len(self.class_names))


class OnnxSegmenter:
    """A segmentation network in ONNX format, run with ONNX Runtime.

    Args:
        model_path: the ``.onnx`` file. Input ``B x 3 x h x w`` float32; output either logits
            ``B x C x h' x w'`` or labels ``B x h' x w'`` (any integer type).
        class_names: names of the C classes.
        input_size: ``(h, w)`` the network expects; None feeds images at their own size.
            Resizing happens here, after demasking.
        mean, std: per-channel normalisation in 0-255 units, in the model's channel order.
        channel_order: ``"RGB"`` or ``"BGR"``, the order the model was trained with.
        providers: ONNX Runtime execution providers in priority order (full names or the
            aliases ``cpu``, ``cuda``, ``tensorrt``); a requested accelerator that does not
            actually become active is an error (no silent CPU fallback).
        intra_op_threads: CPU threads (>= 1); fixed, with one inter-op thread, sequential execution
            and deterministic kernels, so the same frame always gives the same labels.

    A graph with ``BatchNormalization(training_mode=1)`` (batch statistics: one branch would
    depend on its batch-mates) is refused at load. ONNX Runtime's CPU memory arena is off, so
    memory taken by one large frame goes back to the allocator afterwards.
    """

    def __init__(
        self,
        model_path: str | Path,
        class_names: Sequence[str],
        input_size: tuple[int, int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        channel_order: str = "RGB",
        providers: Sequence[str] = ("CPUExecutionProvider",),
        intra_op_threads: int = 2,
    ) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"segmentation model not found: {path}")
        if channel_order not in ("RGB", "BGR"):
            raise EngineError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise EngineError("mean and std need 3 values each, std positive")
        if not class_names:
            raise EngineError("a segmenter needs at least one class name")
        if int(intra_op_threads) < 1:
            # 0 would let ONNX Runtime pick the thread count from the machine: not reproducible.
            raise EngineError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        check_inference_graph(path)
        self.model_path = path
        self.class_names = list(class_names)
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.channel_order = channel_order
        self._scale = (1.0 / np.asarray(std, np.float32)).reshape(1, 3, 1, 1)
        self._shift = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
        requested = resolve_providers(providers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(intra_op_threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.use_deterministic_compute = True  # rule 3: same frame, same labels (GPU kernels too)
        options.log_severity_level = 3
        # ONNX Runtime's CPU arena stays on (about 30 % faster per call, measured): it keeps at most
        # one chunk's activations, which the executor's memory budget bounds, and with the node's
        # automatic working size the models only ever see working-size frames.
        # Idle threads sleep instead of spinning: the CPU is shared with the demasker and ROS.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=requested)
        except Exception as error:  # onnxruntime raises its own exception types
            raise EngineError(f"cannot load segmentation model {path}: {error}") from error
        self.providers = check_active(self.session, requested)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise EngineError(f"{path}: expected one B x 3 x H x W input, got "
                              f"{[(i.name, i.shape) for i in inputs]}")
        self._input_name = inputs[0].name
        self._output_name = self.session.get_outputs()[0].name

    def segment(self, images: np.ndarray) -> np.ndarray:
        """Labels at the input resolution for a batch of RGB uint8 images."""
        check_images(images)
        height, width = images.shape[1:3]
        tensor = self._preprocess(images)
        try:
            (output,) = self.session.run([self._output_name], {self._input_name: tensor})
        except Exception as error:
            raise EngineError(f"segmentation model failed on a {tensor.shape} batch: {error}") from error
        labels = self._to_labels(np.asarray(output), height, width)
        return check_labels(labels, images, len(self.class_names))

    def _preprocess(self, images: np.ndarray) -> np.ndarray:
        if self.input_size is not None and images.shape[1:3] != self.input_size:
            h, w = self.input_size
            images = np.stack([cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) for img in images])
        if self.channel_order == "BGR":
            images = images[..., ::-1]
        tensor = images.transpose(0, 3, 1, 2).astype(np.float32)
        return np.ascontiguousarray((tensor - self._shift) * self._scale)

    def _to_labels(self, output: np.ndarray, height: int, width: int) -> np.ndarray:
        if output.ndim == 4:  # logits B x C x h x w
            if output.shape[1] != len(self.class_names):
                raise EngineError(f"model outputs {output.shape[1]} classes, "
                                  f"{len(self.class_names)} class names were given")
            if output.shape[2:] != (height, width):
                output = np.stack([_resize_logits(logits, height, width) for logits in output])
            return output.argmax(axis=1).astype(np.int32)
        if output.ndim == 3 and np.issubdtype(output.dtype, np.integer):
            if output.shape[1:] != (height, width):
                output = np.stack([cv2.resize(lab.astype(np.int32), (width, height),
                                              interpolation=cv2.INTER_NEAREST) for lab in output])
            return output.astype(np.int32)
        raise EngineError(f"unsupported model output {output.shape} {output.dtype}: "
                          "expected B x C x H x W logits or B x H x W integer labels")


def _resize_logits(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of C x h x w logits to C x height x width (in chunks of <= 256 channels)."""
    channels = logits.shape[0]
    resized = [
        cv2.resize(np.ascontiguousarray(logits[c0:c0 + 256].transpose(1, 2, 0), dtype=np.float32),
                   (width, height), interpolation=cv2.INTER_LINEAR).reshape(height, width, -1)
        for c0 in range(0, channels, 256)
    ]
    return np.concatenate(resized, axis=2).transpose(2, 0, 1)
