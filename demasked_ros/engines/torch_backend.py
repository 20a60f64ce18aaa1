"""PyTorch segmenters: an ``nn.Module`` or a TorchScript file behind the Segmenter protocol.

Why a separate backend: many users' models exist only as PyTorch code. This wrapper declares
what the model expects (input size, channel order, mean/std, class names), does the resizing
after demasking, and keeps inference deterministic: eval mode, no autograd, a fixed thread count
(1 by default on CPU: on a shared CPU, 2 torch threads collapse under contention while 1 does
not) and deterministic cuDNN on GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.segmenters import IMAGENET_MEAN, IMAGENET_STD, check_images, check_labels


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
    ) -> None:
        if not class_names:
            raise EngineError("a segmenter needs at least one class name")
        if channel_order not in ("RGB", "BGR"):
            raise EngineError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise EngineError("mean and std need 3 values each, std positive")
        if threads < 1:
            raise EngineError(f"threads must be >= 1, got {threads}")
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise EngineError(f"invalid torch device {device!r}: {error}") from error
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EngineError(f"device {device!r} requested but CUDA is not available to this torch build")
        if self.device.type == "cpu":
            torch.set_num_threads(int(threads))
        else:
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
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
        if self.channel_order == "BGR":
            batch = batch[..., ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(self.device)
        try:
            with torch.inference_mode():
                output = _primary_output(self.model((tensor.float() - self._mean) / self._std))
                labels = self._to_labels(output, height, width)
        except EngineError:
            raise
        except Exception as error:  # any failure inside the user's model
            raise EngineError(f"torch segmenter failed on a {tuple(tensor.shape)} batch: {error}") from error
        return check_labels(labels, images, len(self.class_names))

    def _to_labels(self, output: torch.Tensor, height: int, width: int) -> np.ndarray:
        if output.ndim == 4:
            if output.shape[1] != len(self.class_names):
                raise EngineError(f"model outputs {output.shape[1]} classes, "
                                  f"{len(self.class_names)} class names were given")
            if tuple(output.shape[2:]) != (height, width):
                output = F.interpolate(output.float(), size=(height, width), mode="bilinear",
                                       align_corners=False)
            return output.argmax(dim=1).to(torch.int32).cpu().numpy()
        if output.ndim == 3 and not torch.is_floating_point(output):
            if tuple(output.shape[1:]) != (height, width):
                output = F.interpolate(output[:, None].float(), size=(height, width), mode="nearest")[:, 0]
            return output.to(torch.int32).cpu().numpy()
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
