"""PyTorch engines: a segmenter (``nn.Module``, TorchScript or ``torch.export`` file) and a demasker.

Why a separate backend: many users' models exist only as PyTorch code, and the GPU path needs
models that keep their tensors on the device. This wrapper declares what the model expects
(input size, channel order, mean/std, class names), does the resizing after demasking, and keeps
inference deterministic: eval mode, no autograd, a fixed thread count (1 by default on CPU: on a
shared CPU, 2 torch threads collapse under contention while 1 does not), deterministic
algorithms, cuDNN benchmark off and TF32 off on GPU (:func:`configure_determinism`).

Both engines have two entry points: the numpy protocol (:meth:`TorchSegmenter.segment`,
:meth:`TorchDemasker.demask`) and a tensor path on the engine's device
(:meth:`TorchSegmenter.segment_tensor`, :meth:`TorchDemasker.demask_tensor`) that the CUDA stream
executor chains without any host round trip. The numpy entry points run the tensor path, so both
give the same bits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from demasked_ros.engines.demaskers import hide_masked
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.segmenters import IMAGENET_MEAN, IMAGENET_STD, check_images, check_labels

# cuBLAS needs this before its first use for deterministic results (read once per process).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; :class:`EngineError` when invalid or when CUDA is absent."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise EngineError(f"invalid torch device {device!r}: {error}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r} requested but CUDA is not available to this torch build")
    if resolved.type not in ("cpu", "cuda"):
        raise EngineError(f"device {device!r}: only cpu and cuda devices are supported")
    if resolved.type == "cuda" and resolved.index is None:  # tensors report cuda:N, never bare cuda
        resolved = torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu") if resolved.type == "cpu" else resolved  # CPU tensors report bare cpu


def fixed_size_calls(call: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor],
                     size: int | None) -> torch.Tensor:
    """``call(*inputs)`` in pieces of exactly ``size`` images (the last one zero-padded), re-joined.

    Why: a GPU library may pick its convolution algorithm by batch size, so the same image could
    come out with different rounding alone and in a batch. With a fixed call size every branch is
    computed by the same kernels whatever its batch-mates (soundness rule 2). None: one call.
    """
    count = inputs[0].shape[0]
    if size is None:
        return call(*inputs)
    parts = []
    for start in range(0, count, size):
        piece = [t[start:start + size] for t in inputs]
        short = size - piece[0].shape[0]
        if short:
            piece = [torch.cat([t, t.new_zeros((short, *t.shape[1:]))]) for t in piece]
        parts.append(call(*piece)[: size - short])
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def configure_determinism(device: torch.device, threads: int) -> None:
    """Process-wide torch settings for reproducible inference (soundness rule 3).

    Deterministic algorithms on (torch picks the deterministic kernel wherever one exists), cuDNN
    benchmark off (no timing-dependent algorithm choice), TF32 off (full fp32, as the ONNX models),
    and a fixed number of CPU threads. ``warn_only``: the setting is process-wide, and some
    *backward* kernels (bilinear upsampling, pooling on CUDA) have no deterministic version; strict
    mode would make gradient users in the same process (attacks, training) raise. Every forward
    op of the inference path has a deterministic kernel, and the same-frame tests check it.
    """
    if threads < 1:
        raise EngineError(f"threads must be >= 1, got {threads}")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    if device.type == "cpu":
        torch.set_num_threads(int(threads))


def load_torch_model(model: torch.nn.Module | str | Path, device: torch.device) -> torch.nn.Module:
    """A module in eval mode on ``device``: an ``nn.Module``, a TorchScript file (``.pt``/``.ts``,
    ``torch.jit.save``) or a ``torch.export`` program (``.pt2``, ``torch.export.save``).

    Batch statistics would make one branch depend on its batch-mates, so: a ``.pt2`` program
    (which cannot be put in eval mode with ``.eval()``) has its batch-norm and dropout calls
    rewritten to inference mode (:func:`exported_to_eval`), and a traced TorchScript with
    batch-norm frozen in training mode is refused. Raises :class:`EngineError` when the file is
    missing, bad or refused.
    """
    if isinstance(model, torch.nn.Module):
        return model.to(device).eval()
    path = Path(model)
    if not path.is_file():
        raise EngineError(f"torch model file not found: {path}")
    try:
        if path.suffix == ".pt2":
            return exported_to_eval(torch.export.load(str(path)).module()).to(device)
        scripted = torch.jit.load(str(path), map_location=device).eval()
    except EngineError:
        raise
    except Exception as error:  # torch raises RuntimeError / various parser errors
        raise EngineError(f"cannot load torch model {path}: {error}") from error
    frozen = traced_training_ops(scripted)
    if frozen:
        raise EngineError(f"{path}: {len(frozen)} x {frozen[0]} traced in training mode (batch statistics: "
                          "one branch would depend on the others in its batch); trace it after "
                          "model.eval()")
    return scripted


#: (op, index of its ``training`` argument) for the ATen calls that behave differently in training.
_TRAINING_ARGUMENT = {"batch_norm": 5, "native_batch_norm": 5, "dropout": 2, "native_dropout": 2,
                      "feature_dropout": 2, "alpha_dropout": 2, "feature_alpha_dropout": 2}
#: Batch-norm variants that exist only in training graphs (no inference form to rewrite to).
_TRAINING_ONLY = ("_native_batch_norm_legit_functional", "_native_batch_norm_legit",
                  "cudnn_batch_norm", "miopen_batch_norm")


def exported_to_eval(module: torch.nn.Module) -> torch.nn.Module:
    """A ``torch.export`` module with every batch-norm/dropout call switched to inference mode.

    Why: ``ExportedProgram.module()`` refuses ``.eval()``, and a program exported from a module
    in training mode normalises with batch statistics. The ``training`` argument of each such
    call in the FX graph is set to False (what ``.eval()`` does for a live module).

    Raises:
        EngineError: a training-only batch-norm op that has no inference form in the graph.
    """
    graph = getattr(module, "graph", None)
    if graph is None:
        raise EngineError(f"expected an FX graph module from torch.export, got {type(module).__name__}")
    changed = False
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(getattr(node.target, "_overloadpacket", None), "__name__", str(node.target))
        if name in _TRAINING_ONLY:
            raise EngineError(f"exported program uses {name} (batch statistics, training only); export "
                              "the model after model.eval()")
        index = _TRAINING_ARGUMENT.get(name)
        if index is not None and len(node.args) > index and node.args[index] is True:
            node.args = (*node.args[:index], False, *node.args[index + 1:])
            changed = True
    if changed:
        module.recompile()  # type: ignore[operator]
    return module


def traced_training_ops(module: torch.jit.ScriptModule) -> list[str]:
    """TorchScript ops whose ``training`` argument is a constant True (traced in training mode)."""
    found = []
    for node in module.inlined_graph.nodes():
        kind = node.kind()
        if not kind.startswith("aten::"):
            continue
        index = _TRAINING_ARGUMENT.get(kind[len("aten::"):])
        inputs = list(node.inputs())
        if index is None or len(inputs) <= index:
            continue
        source = inputs[index].node()
        if source.kind() == "prim::Constant" and source.output().toIValue() is True:
            found.append(kind)
    return found


class TorchSegmenter:
    """A PyTorch segmentation model as a :class:`~demasked_ros.engines.protocols.Segmenter`.

    Args:
        model: an ``nn.Module``, a TorchScript file or a ``torch.export`` ``.pt2`` file. It maps
            float32 ``B x 3 x h x w`` to logits ``B x C x h' x w'`` or integer labels
            ``B x h' x w'``; a dict output uses its ``"out"`` entry, a tuple/list its first item.
        class_names: names of the C classes (index = label).
        input_size: ``(h, w)`` the network expects; None feeds frames at their own size.
            Resizing happens here, after demasking.
        mean, std: per-channel normalisation in 0-255 units, in the model's channel order.
        channel_order: ``"RGB"`` or ``"BGR"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        threads: torch intra-op threads when on CPU (process-wide setting in PyTorch).
        fixed_batch: run the network on batches of exactly this many images (zero-padded; see
            :func:`fixed_size_calls`); None: the batch as given.
    """

    def __init__(
        self,
        model: torch.nn.Module | str | Path,
        class_names: Sequence[str],
        input_size: tuple[int, int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        channel_order: str = "RGB",
        device: str | torch.device = "cpu",
        threads: int = 1,
        fixed_batch: int | None = None,
    ) -> None:
        if fixed_batch is not None and fixed_batch < 1:
            raise EngineError(f"fixed_batch must be >= 1 or None, got {fixed_batch}")
        self.fixed_batch = fixed_batch
        if not class_names:
            raise EngineError("a segmenter needs at least one class name")
        if channel_order not in ("RGB", "BGR"):
            raise EngineError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise EngineError("mean and std need 3 values each, std positive")
        self.device = resolve_device(device)
        configure_determinism(self.device, threads)
        self.threads = int(threads)
        self.class_names = list(class_names)
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.channel_order = channel_order
        self.model = load_torch_model(model, self.device)
        self._mean = torch.tensor(list(mean), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(list(std), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def segment(self, images: np.ndarray) -> np.ndarray:
        """Labels (int32) at the input resolution for a batch of RGB uint8 images."""
        check_images(images)
        height, width = images.shape[1:3]
        batch = images
        if self.input_size is not None and batch.shape[1:3] != self.input_size:
            h, w = self.input_size
            batch = np.stack([cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) for img in batch])
        tensor = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(self.device)
        labels = self._infer(tensor, height, width).cpu().numpy()
        return check_labels(labels, images, len(self.class_names))

    def segment_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """Tensor path: uint8 ``B x 3 x H x W`` RGB on the engine's device -> int32 ``B x H x W``
        labels on the device, with no host synchronisation.

        With ``input_size`` the resize is torch's bilinear one (the numpy path uses OpenCV's), so
        only models fed at frame size give the numpy path's exact bits.
        """
        if (not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4
                or images.shape[1] != 3 or images.shape[0] < 1):
            raise EngineError(f"tensor path expects uint8 B x 3 x H x W, got "
                              f"{tuple(getattr(images, 'shape', ()))} "
                              f"{getattr(images, 'dtype', type(images))}")
        if images.device != self.device:
            raise EngineError(f"tensor on {images.device}, segmenter on {self.device}")
        height, width = images.shape[2:]
        batch = images
        if self.input_size is not None and tuple(batch.shape[2:]) != self.input_size:
            batch = F.interpolate(batch.float(), size=self.input_size, mode="bilinear",
                                  align_corners=False).round().clamp(0, 255).to(torch.uint8)
        return self._infer(batch, height, width)

    def _infer(self, batch: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """uint8 B x 3 x h x w RGB on the device -> int32 labels B x height x width on the device."""
        if self.channel_order == "BGR":
            batch = batch.flip(1)
        try:
            with torch.inference_mode():
                return fixed_size_calls(lambda piece: self._to_labels(
                    _primary_output(self.model((piece.float() - self._mean) / self._std)), height, width),
                    [batch], self.fixed_batch)
        except EngineError:
            raise
        except Exception as error:  # any failure inside the user's model
            raise EngineError(f"torch segmenter failed on a {tuple(batch.shape)} batch: {error}") from error

    def _to_labels(self, output: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if output.ndim == 4:
            if output.shape[1] != len(self.class_names):
                raise EngineError(f"model outputs {output.shape[1]} classes, "
                                  f"{len(self.class_names)} class names were given")
            if tuple(output.shape[2:]) != (height, width):
                output = F.interpolate(output.float(), size=(height, width), mode="bilinear",
                                       align_corners=False)
            return output.argmax(dim=1).to(torch.int32)
        if output.ndim == 3 and not torch.is_floating_point(output):
            if tuple(output.shape[1:]) != (height, width):
                output = F.interpolate(output[:, None].float(), size=(height, width), mode="nearest")[:, 0]
            # Range is checked by check_labels (numpy path) or by the executor's device-side check.
            return output.to(torch.int32)
        raise EngineError(f"unsupported model output {tuple(output.shape)} {output.dtype}: "
                          "expected B x C x H x W logits or B x H x W integer labels")


def _primary_output(output: Any) -> torch.Tensor:
    """The tensor of interest from a model output (tensor, ``{"out": ...}`` dict, tuple or list)."""
    if isinstance(output, Mapping):
        if "out" not in output:
            raise EngineError(f"model returned a dict without an 'out' entry: {sorted(output)}")
        output = output["out"]
    elif isinstance(output, tuple | list):
        if not output:
            raise EngineError("model returned an empty sequence")
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise EngineError(f"model returned {type(output).__name__}, expected a tensor")
    return output


class TorchDemasker:
    """A torch demasking module as a :class:`~demasked_ros.engines.protocols.Demasker`.

    ``model(images float32 B x 3 x H x W in 0..255, visible float32 B x 1 x H x W) -> float32
    B x 3 x H x W in 0..255`` (e.g. :func:`demasked_ros.engines.torch_twins.demasker_module`).
    Soundness is enforced here, outside the network: masked pixels are zeroed before it, visible
    pixels are copied through bit for bit after it, and non-finite fills become 0 (a fill, however
    bad, depends on visible pixels only, so the certificate stays sound; a host sync to raise
    instead would stall the device pipeline).

    Args:
        model: the module.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        threads: torch intra-op threads on CPU (process-wide).
        max_batch: images per network call (bounds device memory).
        fixed_batch: pad every call to exactly ``max_batch`` images (see :func:`fixed_size_calls`).
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", threads: int = 1,
                 max_batch: int = 16, fixed_batch: bool = False) -> None:
        if max_batch < 1:
            raise EngineError(f"max_batch must be >= 1, got {max_batch}")
        self.device = resolve_device(device)
        configure_determinism(self.device, threads)
        self.threads = int(threads)
        self.max_batch = int(max_batch)
        self.fixed_batch = fixed_batch
        self.model = load_torch_model(model, self.device)

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Demasked B x H x W x 3 uint8 images (numpy protocol); visible pixels returned unchanged."""
        hidden = hide_masked(images, visible)  # validates shapes, zeroes masked pixels
        tensor = torch.from_numpy(np.ascontiguousarray(hidden.transpose(0, 3, 1, 2))).to(self.device)
        out = self.demask_tensor(tensor, torch.from_numpy(visible.copy()).to(self.device))
        return np.ascontiguousarray(out.permute(0, 2, 3, 1).cpu().numpy())

    def demask_tensor(self, images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Tensor path: uint8 ``B x 3 x H x W`` and bool ``B x H x W`` visibility on the device ->
        uint8 ``B x 3 x H x W`` on the device, no host synchronisation."""
        if (not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4
                or images.shape[1] != 3):
            raise EngineError(f"demasker tensor path expects uint8 B x 3 x H x W, got "
                              f"{tuple(getattr(images, 'shape', ()))} {getattr(images, 'dtype', '')}")
        if (not isinstance(visible, torch.Tensor) or visible.dtype != torch.bool
                or tuple(visible.shape) != (images.shape[0], *images.shape[2:])):
            raise EngineError(f"visibility must be bool {(images.shape[0], *images.shape[2:])}, got "
                              f"{tuple(getattr(visible, 'shape', ()))} {getattr(visible, 'dtype', '')}")
        if images.device != self.device or visible.device != self.device:
            raise EngineError(f"tensors on {images.device}/{visible.device}, demasker on {self.device}")
        keep = visible[:, None]
        hidden = images * keep  # masked pixels are zero whatever the caller passed
        parts = []
        try:
            with torch.inference_mode():
                for start in range(0, images.shape[0], self.max_batch):
                    stop = start + self.max_batch
                    pieces = [hidden[start:stop].float(), keep[start:stop].float()]
                    size = self.max_batch if self.fixed_batch else None
                    filled = fixed_size_calls(self.model, pieces, size)
                    parts.append(torch.nan_to_num(filled, nan=0.0, posinf=255.0, neginf=0.0)
                                 .round().clamp(0, 255).to(torch.uint8))
        except Exception as error:  # any failure inside the module
            raise EngineError(f"torch demasker failed on a {tuple(images.shape)} batch: {error}") from error
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        if out.shape != images.shape:
            raise EngineError(f"demasker returned {tuple(out.shape)}, expected {tuple(images.shape)}")
        return torch.where(keep, hidden, out)
