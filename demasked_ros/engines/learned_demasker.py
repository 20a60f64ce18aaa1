"""The project's learned demasker: a small ONNX encoder-decoder run with ONNX Runtime.

Why: it reconstructs masked regions from scene priors learned on CamVid, which beats OpenCV's
TELEA on masked-pixel PSNR (see ``demasked_ros/models/DEMASKER_MODEL_CARD.md``), at a few ms per
480x360 image on 2 CPU threads. Only onnxruntime and numpy are needed to run it.

Soundness (the network is untrusted code from the certificate's point of view, so the guarantees
are enforced here, outside it):

* masked pixels are zeroed again before the network (even when called outside the Certifier);
* the padding added to reach the network stride is marked masked, and carries zeros;
* visible pixels are copied through unchanged: ``output = visible ? input : network``;
* inference is deterministic: a fixed number of intra-op threads and sequential execution;
* a graph normalising with batch statistics (BatchNormalization in training mode) is refused.

Any failure (bad shapes, runtime error, non-finite output) raises :class:`EngineError`, so the
caller fails closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from demasked_ros.engines.demaskers import hide_masked
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.factory import DEFAULT_DEMASKER_PATH
from demasked_ros.engines.onnx_graph import check_inference_graph

#: Graph input/output names written by ``demasked_ros.training.demasker_eval.export_onnx``.
IMAGE_INPUT, VISIBLE_INPUT = "image", "visible"
#: Metadata key holding the stride that H and W must be padded to (16 when absent).
STRIDE_METADATA_KEY = "demasked_ros.stride"
_DEFAULT_STRIDE = 16


class LearnedDemasker:
    """Demasker protocol implementation around an ONNX demasking network.

    Args:
        model_path: ONNX file with inputs ``image`` (B x 3 x H x W float RGB in [0, 1]) and
            ``visible`` (B x 1 x H x W float, 1 = visible) and one output B x 3 x H x W in [0, 1].
        providers: ONNX Runtime execution providers in order of preference. Every requested
            provider must actually be active (onnxruntime-gpu silently falls back to CPU
            otherwise); a missing one raises :class:`EngineError`.
        threads: intra-op threads (fixed, so that results are reproducible).
        max_batch: images per network call; larger batches are split (bounds memory).
    """

    def __init__(
        self,
        model_path: str | Path = DEFAULT_DEMASKER_PATH,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int = 2,
        max_batch: int = 8,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"demasker model not found: {path}")
        if threads < 1 or max_batch < 1:
            raise EngineError(f"threads and max_batch must be >= 1, got {threads} and {max_batch}")
        check_inference_graph(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.use_deterministic_compute = True
        options.log_severity_level = 3
        # ONNX Runtime's CPU arena stays on (about 30 % faster per call, measured): it keeps at most
        # one chunk's activations, which the executor's memory budget bounds, and with the node's
        # automatic working size the models only ever see working-size frames.
        # Idle workers sleep instead of spinning: on a CPU shared with the segmenter and the rest
        # of the robot, spinning threads steal the cores they wait for (measured ~2x slower).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        except Exception as error:  # ORT raises several unrelated types
            raise EngineError(f"cannot load demasker model {path}: {error}") from error
        active = self.session.get_providers()
        missing = [p for p in providers if p not in active]
        if missing:
            raise EngineError(f"execution providers {missing} requested but not active (active: {active})")
        names = {i.name for i in self.session.get_inputs()}
        if names != {IMAGE_INPUT, VISIBLE_INPUT}:
            raise EngineError(f"{path} is not a demasker model: inputs {sorted(names)}")
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.stride = int(metadata.get(STRIDE_METADATA_KEY, _DEFAULT_STRIDE))
        self.model_path = path
        self.threads = int(threads)
        self.max_batch = int(max_batch)

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Demasked B x H x W x 3 uint8 images; visible pixels are returned bit-for-bit."""
        hidden = hide_masked(images, visible)  # validates shapes and zeroes masked pixels
        out = np.empty_like(hidden)
        for start in range(0, hidden.shape[0], self.max_batch):
            stop = start + self.max_batch
            out[start:stop] = self._run(hidden[start:stop], visible[start:stop])
        return np.where(visible[..., None], hidden, out)

    def _run(self, hidden: np.ndarray, visible: np.ndarray) -> np.ndarray:
        batch, height, width = visible.shape
        padded_h = -(-height // self.stride) * self.stride
        padded_w = -(-width // self.stride) * self.stride
        image = np.zeros((batch, 3, padded_h, padded_w), dtype=np.float32)
        image[:, :, :height, :width] = hidden.transpose(0, 3, 1, 2)
        image *= np.float32(1.0 / 255.0)
        mask = np.zeros((batch, 1, padded_h, padded_w), dtype=np.float32)  # padding = masked
        mask[:, 0, :height, :width] = visible
        try:
            (result,) = self.session.run(None, {IMAGE_INPUT: image, VISIBLE_INPUT: mask})
        except Exception as error:
            raise EngineError(f"demasker inference failed: {error}") from error
        if result.shape != image.shape or not np.isfinite(result).all():
            raise EngineError(f"demasker returned bad output {result.shape} (expected {image.shape})")
        result = result[:, :, :height, :width].transpose(0, 2, 3, 1)
        return np.clip(np.rint(result * 255.0), 0, 255).astype(np.uint8)


def default_learned_demasker(
    providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 2
) -> LearnedDemasker:
    """The demasker shipped with the package (``demasked_ros/models/demasker.onnx``), CPU by default."""
    return LearnedDemasker(DEFAULT_DEMASKER_PATH, providers=providers, threads=threads)
