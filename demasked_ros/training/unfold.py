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
(``demasked-train unfold`` is the same command); the result is checked against the twin.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from demasked_ros.engines.segmenter_net import CompactSegNet, FullResolutionSegNet
from demasked_ros.engines.torch_twins import execution_order, segmenter_module
from demasked_ros.training.data import TrainingDataError

LOG = logging.getLogger("demasked_ros.training.unfold")
#: The packaged segmenter's architecture, as a ``consistency`` checkpoint config describes it.
SHIPPED_CONFIG: dict[str, Any] = {"arch": "compact", "widths": [24, 48, 96], "decoder_width": 48,
                                  "downscale": 2}


def _conv_bn_pairs(net: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """Every convolution of ``net`` in execution order with the batch norm that follows it."""
    order = execution_order(net, (torch.zeros(1, 3, 64, 64),))
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = []
    for index, module in enumerate(order):
        if isinstance(module, nn.Conv2d):
            following = order[index + 1] if index + 1 < len(order) else None
            pairs.append((module, following if isinstance(following, nn.BatchNorm2d) else None))
    return pairs


def _folded_convs(twin_trunk: nn.Module) -> list[nn.Conv2d]:
    order = execution_order(twin_trunk, (torch.zeros(1, 3, 64, 64),))
    return [module for module in order if isinstance(module, nn.Conv2d)]


def conv_statistics(twin: FullResolutionSegNet, frames: np.ndarray, batch: int = 4
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per folded convolution of the twin's trunk: channel mean and variance of ``W x`` (the
    output without its bias) over ``frames`` (N x H x W x 3 uint8 RGB)."""
    convs = _folded_convs(twin.net)
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
            for start in range(0, len(frames), batch):
                chunk = torch.from_numpy(np.ascontiguousarray(frames[start:start + batch]))
                twin(chunk.permute(0, 3, 1, 2).float())
    finally:
        for handle in handles:
            handle.remove()
    stats = []
    for total, square, count in zip(sums, squares, counts, strict=True):
        mean = total / max(count, 1)
        stats.append((mean.float(), (square / max(count, 1) - mean * mean).clamp_min(1e-6).float()))
    return stats


def unfold_shipped(frames: np.ndarray) -> tuple[CompactSegNet, float]:
    """The packaged segmenter as a :class:`CompactSegNet` with batch norms (statistics measured on
    ``frames``), and the max abs logit difference to the twin on the first frames (eval mode)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise TrainingDataError(f"unfold needs N x H x W x 3 uint8 frames, got {frames.shape} {frames.dtype}")
    twin = segmenter_module("cpu")
    assert isinstance(twin, FullResolutionSegNet)
    folded = _folded_convs(twin.net)
    stats = conv_statistics(twin, frames)
    net = CompactSegNet(11, widths=SHIPPED_CONFIG["widths"], decoder_width=SHIPPED_CONFIG["decoder_width"])
    pairs = _conv_bn_pairs(net)
    if len(pairs) != len(folded):
        raise TrainingDataError(f"architecture mismatch: {len(pairs)} convolutions vs {len(folded)} folded")
    with torch.no_grad():
        for (conv, bn), source, (mean, var) in zip(pairs, folded, stats, strict=True):
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
    check = torch.from_numpy(np.ascontiguousarray(frames[:2])).permute(0, 3, 1, 2).float()
    unfolded = FullResolutionSegNet(net, downscale=2, normalize_input=True).eval()
    with torch.no_grad():
        difference = float((unfolded(check) - twin(check)).abs().max())
    return net, difference


def write_checkpoint(net: CompactSegNet, out: Path, difference: float) -> None:
    """A checkpoint ``consistency --init`` accepts: the weights plus the architecture config."""
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict(), "config": dict(SHIPPED_CONFIG), "epoch": -1, "iteration": 0,
                "history": [], "source": "unfolded from the packaged segmenter.onnx (torch twin)",
                "max_abs_logit_diff": difference}, out)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: measure statistics on CamVid frames (or procedural scenes) and write the checkpoint."""
    parser = argparse.ArgumentParser(prog="demasked-train unfold", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    parser.add_argument("--data", type=Path, default=None, help="CamVid root (default ../shared/data/camvid)")
    parser.add_argument("--frames", type=int, default=32, help="frames for the statistics")
    parser.add_argument("--procedural", action="store_true", help="use procedural scenes (no data needed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
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
    net, difference = unfold_shipped(frames)
    if difference > 1e-2:
        raise SystemExit(f"unfold: unfolded network differs from the twin by {difference:.3g}")
    write_checkpoint(net, args.out, difference)
    print(f"wrote {args.out}: max |unfolded - twin| logit {difference:.2e} on 2 frames "
          f"(statistics from {len(frames)} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
