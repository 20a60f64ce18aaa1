"""Torch twins of the packaged default models: the same networks as ``segmenter.onnx`` and
``demasker.onnx``, as ``torch.nn.Module`` s that run on ``cpu`` or ``cuda`` and are differentiable.

Why: the GPU path (:mod:`demasked_ros.engines.cuda_executor`) keeps every branch on the device,
and the attack code needs gradients; both need the default models in torch. The twins are the
training architectures (``CompactSegNet`` / ``FullResolutionSegNet`` and ``DemaskerNet``) with
their batch norms folded into the preceding convolutions, exactly as the ONNX export folded them,
so the weights are the ONNX initializers copied one to one (no retraining, no drift). They are
committed as state dicts ``models/segmenter_torch.pt`` and ``models/demasker_torch.pt`` and
regenerated from the ONNX files by::

    python -m demasked_ros.engines.torch_twins --regenerate

(needs the ``onnx`` package; loading the twins needs torch alone).

Contract (shared with the attack code):

* :func:`segmenter_module`: float32 ``B x 3 x H x W`` RGB in 0..255 -> logits float32
  ``B x 11 x H x W`` at the input resolution (normalisation and the 2x area downscale inside).
* :func:`demasker_module`: (images float32 ``B x 3 x H x W`` in 0..255 with masked pixels zero,
  visible float32 ``B x 1 x H x W`` in {0, 1}) -> float32 ``B x 3 x H x W`` in 0..255 whose
  visible pixels equal the input (composited). Any H and W: padding to the network stride is
  added inside, marked masked, and cropped off.

The architectures live in :mod:`demasked_ros.engines.segmenter_net` and
:mod:`demasked_ros.engines.demasker_net` (torch only): one definition of each network, shared by
the training code and the twins.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from demasked_ros.engines.demasker_net import MODEL_STRIDE, DemaskerNet
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.factory import MODELS_DIR
from demasked_ros.engines.segmenter_net import CompactSegNet, FullResolutionSegNet

SEGMENTER_ONNX = MODELS_DIR / "segmenter.onnx"
DEMASKER_ONNX = MODELS_DIR / "demasker.onnx"
SEGMENTER_WEIGHTS = MODELS_DIR / "segmenter_torch.pt"
DEMASKER_WEIGHTS = MODELS_DIR / "demasker_torch.pt"
NUM_CLASSES = 11


class DemaskerTwin(nn.Module):
    """``DemaskerNet`` in 0..255 units for any frame size, composited (see the module docstring)."""

    def __init__(self, net: DemaskerNet, stride: int = MODEL_STRIDE) -> None:
        super().__init__()
        self.net = net
        self.stride = stride

    def forward(self, images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Demasked images in 0..255; visible pixels are the input's, bit for bit."""
        height, width = images.shape[-2:]
        pad_h, pad_w = -height % self.stride, -width % self.stride
        visible = (visible > 0.5).to(images.dtype)
        hidden = images * visible
        # Padding is masked (visible = 0) and carries zeros, as in LearnedDemasker.
        padded = F.pad(hidden / 255.0, (0, pad_w, 0, pad_h))
        padded_visible = F.pad(visible, (0, pad_w, 0, pad_h))
        prediction = self.net(padded, padded_visible)[..., :height, :width] * 255.0
        return hidden * visible + (1.0 - visible) * prediction


def segmenter_architecture() -> FullResolutionSegNet:
    """The default segmenter's network with batch norms folded (random weights)."""
    model = FullResolutionSegNet(CompactSegNet(NUM_CLASSES), downscale=2, normalize_input=True)
    fold_batchnorms(model, (torch.zeros(1, 3, 64, 64),))
    return model.eval()


def demasker_architecture() -> DemaskerTwin:
    """The default demasker's network with batch norms folded (random weights)."""
    model = DemaskerTwin(DemaskerNet())
    fold_batchnorms(model, (torch.zeros(1, 3, 32, 32), torch.ones(1, 1, 32, 32)))
    return model.eval()


def segmenter_module(device: str | torch.device = "cpu") -> nn.Module:
    """The default segmenter as a torch module in eval mode on ``device`` (see the contract above)."""
    return _load(segmenter_architecture(), SEGMENTER_WEIGHTS, device)


def demasker_module(device: str | torch.device = "cpu") -> nn.Module:
    """The default learned demasker as a torch module in eval mode on ``device``."""
    return _load(demasker_architecture(), DEMASKER_WEIGHTS, device)


def segmenter_module_from_onnx(onnx_path: Path, device: str | torch.device = "cpu") -> nn.Module:
    """The twin of another ONNX file of the default segmenter's architecture (a fold model, a
    retrained default): the ONNX initializers copied into :func:`segmenter_architecture`.

    Only the convolutions are checked here (count, shape, stride, dilation); callers that need the
    twin to *be* the ONNX model compare their outputs (the attack worker does, on every run).
    Raises :class:`EngineError` for another architecture or a file ``onnx`` cannot read.
    """
    return _from_onnx(segmenter_architecture(), (torch.zeros(1, 3, 64, 64),), onnx_path, device)


def demasker_module_from_onnx(onnx_path: Path, device: str | torch.device = "cpu") -> nn.Module:
    """The twin of another ONNX file of the default demasker's architecture (as above)."""
    return _from_onnx(demasker_architecture(), (torch.zeros(1, 3, 32, 32), torch.ones(1, 1, 32, 32)),
                      onnx_path, device)


def _from_onnx(model: nn.Module, inputs: Sequence[torch.Tensor], onnx_path: Path,
               device: str | torch.device) -> nn.Module:
    if not Path(onnx_path).is_file():
        raise EngineError(f"ONNX model not found: {onnx_path}")
    try:
        state = twin_state_from_onnx(model, inputs, Path(onnx_path))
    except ImportError as error:
        raise EngineError(f"building a torch twin of {onnx_path} needs the onnx package "
                          "(pip install 'demasked_ros[train]')") from error
    except EngineError:
        raise
    except Exception as error:  # onnx raises DecodeError / ValidationError for bad files
        raise EngineError(f"cannot read {onnx_path}: {error}") from error
    model.load_state_dict(state)
    return model.to(device).eval()


def _load(model: nn.Module, weights: Path, device: str | torch.device) -> nn.Module:
    if not weights.is_file():
        raise EngineError(f"torch twin weights missing at {weights}; regenerate them with "
                          "`python -m demasked_ros.engines.torch_twins --regenerate`")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict({key: value.float() for key, value in state.items()})
    except Exception as error:  # torch raises RuntimeError / pickle errors for bad files
        raise EngineError(f"cannot load torch twin weights {weights}: {error}") from error
    return model.to(device).eval()


def execution_order(model: nn.Module, inputs: Sequence[torch.Tensor]) -> list[nn.Module]:
    """Conv2d and BatchNorm2d modules in the order one forward pass calls them."""
    order: list[nn.Module] = []
    hooks = [module.register_forward_pre_hook(lambda m, _: order.append(m))
             for module in model.modules() if isinstance(module, nn.Conv2d | nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model.eval()(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return order


def fold_batchnorms(model: nn.Module, inputs: Sequence[torch.Tensor]) -> None:
    """Replace every BatchNorm2d that directly follows a Conv2d by Identity, in place.

    The convolution gets a bias (zero here; the weights loaded afterwards are the folded ones).
    This is the structure the ONNX exporter produced, so ONNX initializers map one to one.
    """
    order = execution_order(model, inputs)
    parents = {id(child): (parent, name) for parent in model.modules()
               for name, child in parent.named_children()}
    for previous, module in itertools.pairwise(order):
        if isinstance(module, nn.BatchNorm2d):
            if not isinstance(previous, nn.Conv2d):
                raise EngineError("a batch norm does not follow a convolution; cannot fold it")
            if previous.bias is None:
                previous.bias = nn.Parameter(torch.zeros(previous.out_channels))
            parent, name = parents[id(module)]
            setattr(parent, name, nn.Identity())


def onnx_conv_weights(onnx_path: Path) -> list[tuple[dict[str, Any], list[Any]]]:
    """Per Conv node of an ONNX graph, in graph order: (attributes, [weight, bias] arrays)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    convs = []
    for node in graph.node:
        if node.op_type == "Conv":
            attributes = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
            convs.append((attributes, [initializers[name] for name in node.input[1:]]))
    return convs


def twin_state_from_onnx(model: nn.Module, inputs: Sequence[torch.Tensor], onnx_path: Path) -> dict[str, Any]:
    """Copy the ONNX Conv initializers into ``model``'s convolutions (checked shape by shape)."""
    convs = [m for m in execution_order(model, inputs) if isinstance(m, nn.Conv2d)]
    onnx_convs = onnx_conv_weights(onnx_path)
    if len(convs) != len(onnx_convs):
        raise EngineError(f"{onnx_path}: {len(onnx_convs)} Conv nodes, the twin has {len(convs)}")
    for conv, (attributes, arrays) in zip(convs, onnx_convs, strict=True):
        stride = list(attributes.get("strides", [1, 1]))
        dilation = list(attributes.get("dilations", [1, 1]))
        if (list(conv.stride) != stride or list(conv.dilation) != dilation
                or tuple(arrays[0].shape) != tuple(conv.weight.shape)):
            raise EngineError(f"{onnx_path}: Conv {arrays[0].shape} s{stride} d{dilation} does not match "
                              f"the twin's {tuple(conv.weight.shape)} s{conv.stride} d{conv.dilation}")
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(arrays[0].copy()))
            if conv.bias is not None:
                bias = arrays[1] if len(arrays) > 1 else torch.zeros(conv.out_channels).numpy()
                conv.bias.copy_(torch.from_numpy(bias.copy()))
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def regenerate(models_dir: Path = MODELS_DIR) -> dict[str, int]:
    """Write ``segmenter_torch.pt`` and ``demasker_torch.pt`` from the ONNX files; returns sizes."""
    jobs: list[tuple[Callable[[], nn.Module], tuple[torch.Tensor, ...], str, str]] = [
        (segmenter_architecture, (torch.zeros(1, 3, 64, 64),), "segmenter.onnx", "segmenter_torch.pt"),
        (demasker_architecture, (torch.zeros(1, 3, 32, 32), torch.ones(1, 1, 32, 32)),
         "demasker.onnx", "demasker_torch.pt"),
    ]
    sizes = {}
    for build, inputs, source, target in jobs:
        state = twin_state_from_onnx(build(), inputs, models_dir / source)
        torch.save(state, models_dir / target)
        sizes[target] = (models_dir / target).stat().st_size
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``--regenerate`` writes the twins' state dicts next to the ONNX files."""
    parser = argparse.ArgumentParser(description="Torch twins of the packaged ONNX models.")
    parser.add_argument("--regenerate", action="store_true", help="rewrite the .pt files from the ONNX files")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    args = parser.parse_args(argv)
    if not args.regenerate:
        parser.print_help()
        return 0
    for name, size in regenerate(args.models_dir).items():
        print(f"wrote {args.models_dir / name} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
