"""Turn the shipped (batch-norm-folded) segmenter back into a trainable checkpoint.

Why: the packaged ``segmenter.onnx`` keeps no training checkpoint, only folded weights (each batch
norm merged into the convolution before it; the torch twin holds the same). Certification-aware
fine-tuning (``demasked-train consistency --init``) wants a network *with* batch norms, because
its batches are normalised per batch in training. Unfolding is exact in eval mode: for a folded
convolution ``W x + b`` the unfolded pair is ``W x`` followed by a batch norm with running
statistics ``mu, var`` of ``W x`` measured on real frames, scale ``sqrt(var + eps)`` and shift
``mu + b``, i.e. ``(W x - mu) / sqrt(var + eps) * sqrt(var + eps) + mu + b = W x + b``. With the
measured statistics, train-mode batch statistics are close to the running ones, so fine-tuning
starts from (almost) the shipped function instead of from a network whose activations are
suddenly renormalised.

``python -m demasked_ros.training.unfold --out runs/shipped_init.pt`` writes the checkpoint
(``demasked-train unfold`` is the same command; ``--model demasker`` does the same for the learned
demasker, for ``demasked-train demasker --init``); the result is checked against the twin.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from demasked_ros.engines.demasker_net import DemaskerNet
from demasked_ros.engines.segmenter_net import CompactSegNet, FullResolutionSegNet
from demasked_ros.engines.torch_twins import DemaskerTwin, demasker_module, execution_order, segmenter_module
from demasked_ros.training.data import TrainingDataError

#: The packaged segmenter's architecture, as a ``consistency`` checkpoint config describes it.
SHIPPED_CONFIG: dict[str, Any] = {"arch": "compact", "widths": [24, 48, 96], "decoder_width": 48,
                                  "downscale": 2}
Example = tuple[torch.Tensor, ...]
#: Inputs that trace each network's execution order (shape-agnostic networks).
SEGMENTER_EXAMPLE: Example = (torch.zeros(1, 3, 64, 64),)
DEMASKER_EXAMPLE: Example = (torch.zeros(1, 3, 32, 32), torch.ones(1, 1, 32, 32))


def _conv_bn_pairs(net: nn.Module, example: Example) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """Every convolution of ``net`` in execution order with the batch norm that follows it."""
    order = execution_order(net, example)
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = []
    for index, module in enumerate(order):
        if isinstance(module, nn.Conv2d):
            following = order[index + 1] if index + 1 < len(order) else None
            pairs.append((module, following if isinstance(following, nn.BatchNorm2d) else None))
    return pairs


def folded_convs(folded: nn.Module, example: Example) -> list[nn.Conv2d]:
    """The convolutions of a batch-norm-folded network, in execution order."""
    return [module for module in execution_order(folded, example) if isinstance(module, nn.Conv2d)]


def conv_statistics(convs: Sequence[nn.Conv2d], run: Callable[[], None]
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per convolution: channel mean and variance of ``W x`` (its output without the bias) over
    every forward pass ``run()`` makes (hooks on ``convs``; no gradients)."""
    sums = [torch.zeros(conv.out_channels, dtype=torch.float64) for conv in convs]
    squares = [torch.zeros(conv.out_channels, dtype=torch.float64) for conv in convs]
    counts = [0] * len(convs)

    def hook(index: int) -> Any:
        def record(module: nn.Conv2d, _inputs: Any, output: torch.Tensor) -> None:
            bias = module.bias if module.bias is not None else torch.zeros(module.out_channels)
            values = (output - bias.view(1, -1, 1, 1)).double()
            sums[index] += values.sum(dim=(0, 2, 3))
            squares[index] += (values * values).sum(dim=(0, 2, 3))
            counts[index] += values.numel() // values.shape[1]
        return record

    handles = [conv.register_forward_hook(hook(i)) for i, conv in enumerate(convs)]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    stats = []
    for total, square, count in zip(sums, squares, counts, strict=True):
        mean = total / max(count, 1)
        stats.append((mean.float(), (square / max(count, 1) - mean * mean).clamp_min(1e-6).float()))
    return stats


def transfer(folded: nn.Module, fresh: nn.Module, example: Example, run: Callable[[], None]) -> None:
    """Load ``folded``'s weights into ``fresh`` (same architecture with batch norms), each folded
    bias into the batch norm that follows its convolution, with statistics measured by ``run()``."""
    sources = folded_convs(folded, example)
    pairs = _conv_bn_pairs(fresh, example)
    if len(pairs) != len(sources):
        raise TrainingDataError(f"architecture mismatch: {len(pairs)} convolutions vs {len(sources)} folded")
    stats = conv_statistics(sources, run)
    with torch.no_grad():
        for (conv, bn), source, (mean, var) in zip(pairs, sources, stats, strict=True):
            if conv.weight.shape != source.weight.shape:
                raise TrainingDataError(
                    f"conv shape {tuple(conv.weight.shape)} vs {tuple(source.weight.shape)}")
            conv.weight.copy_(source.weight)
            bias = source.bias if source.bias is not None else torch.zeros(source.out_channels)
            if bn is None:
                if conv.bias is None:
                    raise TrainingDataError("a folded bias has nowhere to go (no batch norm, no bias)")
                conv.bias.copy_(bias)
                continue
            bn.running_mean.copy_(mean)  # type: ignore[union-attr]
            bn.running_var.copy_(var)  # type: ignore[union-attr]
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(mean + bias)


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise TrainingDataError(f"unfold needs N x H x W x 3 uint8 frames, got {frames.shape} {frames.dtype}")


def _tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def unfold_shipped(frames: np.ndarray, batch: int = 4) -> tuple[CompactSegNet, float]:
    """The packaged segmenter as a :class:`CompactSegNet` with batch norms (statistics measured on
    ``frames``), and the max abs logit difference to the twin on the first frames (eval mode)."""
    _check_frames(frames)
    twin = segmenter_module("cpu")
    assert isinstance(twin, FullResolutionSegNet)
    net = CompactSegNet(11, widths=SHIPPED_CONFIG["widths"], decoder_width=SHIPPED_CONFIG["decoder_width"])

    def run() -> None:
        for start in range(0, len(frames), batch):
            twin(_tensor(frames[start:start + batch]))

    transfer(twin.net, net, SEGMENTER_EXAMPLE, run)
    unfolded = FullResolutionSegNet(net, downscale=2, normalize_input=True).eval()
    with torch.no_grad():
        difference = float((unfolded(_tensor(frames[:2])) - twin(_tensor(frames[:2]))).abs().max())
    return net, difference


def unfold_shipped_demasker(frames: np.ndarray, batch: int = 4) -> tuple[DemaskerNet, float]:
    """The packaged learned demasker as a :class:`DemaskerNet` with batch norms; statistics over
    ``frames`` under the product's recovery and detection mask families (what it fills in training)."""
    _check_frames(frames)
    from demasked_ros.training.consistency import product_families

    twin = demasker_module("cpu")
    assert isinstance(twin, DemaskerTwin)
    families = product_families(*frames.shape[1:3])  # the masks consistency training fills with it
    visible = np.concatenate([masks.visible for masks in families.recovery + families.detection])
    net = DemaskerNet(tuple(twin.net.widths))  # type: ignore[arg-type]

    def inputs(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        masks = torch.from_numpy(visible[[(index + i) % len(visible) for i in range(batch)]]).float()
        images = _tensor(frames[[(index + i) % len(frames) for i in range(batch)]])
        return images * masks[:, None], masks[:, None]

    def run() -> None:
        for index in range(0, max(len(frames), len(visible)), batch):
            twin(*inputs(index))

    transfer(twin.net, net, DEMASKER_EXAMPLE, run)
    unfolded = DemaskerTwin(net).eval()
    with torch.no_grad():
        difference = float((unfolded(*inputs(0)) - twin(*inputs(0))).abs().max())
    return net, difference


def write_checkpoint(net: nn.Module, out: Path, difference: float, model: str = "segmenter") -> None:
    """A checkpoint ``consistency --init`` (segmenter) or ``demasker --init`` (demasker) accepts:
    the weights plus the architecture config."""
    out.parent.mkdir(parents=True, exist_ok=True)
    config = (dict(SHIPPED_CONFIG) if model == "segmenter"
              else {"widths": list(getattr(net, "widths", ()))})
    torch.save({"model": net.state_dict(), "config": config, "epoch": -1, "iteration": 0,
                "history": [], "source": f"unfolded from the packaged {model}.onnx (torch twin)",
                "max_abs_diff": difference}, out)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: measure statistics on CamVid frames (or procedural scenes) and write the checkpoint."""
    parser = argparse.ArgumentParser(prog="demasked-train unfold", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    parser.add_argument("--model", choices=("segmenter", "demasker"), default="segmenter")
    parser.add_argument("--data", type=Path, default=None, help="CamVid root (default ../shared/data/camvid)")
    parser.add_argument("--frames", type=int, default=32, help="frames for the statistics")
    parser.add_argument("--procedural", action="store_true", help="use procedural scenes (no data needed)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.procedural:
        from demasked_ros.datasets.procedural import street_scene

        frames = np.stack([street_scene(i, 360, 480)[0] for i in range(args.frames)])
    else:
        from demasked_ros.training.data import default_camvid_root, load_frames
        from demasked_ros.training.folds import all_frames

        root = args.data or default_camvid_root()
        refs = all_frames(root)
        step = max(1, len(refs) // args.frames)
        frames = load_frames(root, refs[::step][: args.frames]).images
    net: nn.Module
    net, difference = (unfold_shipped(frames) if args.model == "segmenter"
                       else unfold_shipped_demasker(frames))
    tolerance = 1e-2 if args.model == "segmenter" else 0.5  # logits vs 0..255 pixel values
    if difference > tolerance:
        raise SystemExit(f"unfold: unfolded {args.model} differs from the twin by {difference:.3g}")
    write_checkpoint(net, args.out, difference, args.model)
    print(f"wrote {args.out}: max |unfolded - twin| {difference:.2e} on 2 inputs "
          f"({args.model}; statistics from {len(frames)} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
