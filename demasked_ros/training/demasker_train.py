"""Train the default learned demasker on CamVid and export it to ONNX.

``demasked-train demasker ...`` (or ``python -m demasked_ros.training.demasker_train ...``)
reproduces ``demasked_ros/models/demasker.onnx``. Why a script in the repo: the project ships no
downloaded weights, so the default demasker must be reproducible from CamVid alone.

Training samples are random crops of CamVid train frames, each hidden by one mask of the mask
families the node uses (recovery column K=5 at 0.5 % patch, detection column bands at 1 % patch)
or, to generalise, of other schemes and patch sizes (0.2-2 %). The crop position is the same for
the image and the full-frame mask, so the network sees the real mask geometry. The loss is L1 (plus
a small gradient L1) on masked pixels only; visible pixels are copied through anyway.

Reproducible: fixed seeds (numpy + torch), deterministic sampling, a checkpoint each epoch
(``--resume`` continues bit-for-bit from the last one), metrics as JSON lines, tqdm progress.
Runs on CPU (``--threads``, default 1: a shared CPU collapses with more) or on a GPU when present.

This module holds the command line and the training loop; samples, losses and evaluation/export live in
:mod:`~.demasker_samples`, :mod:`~.demasker_losses` and :mod:`~.demasker_eval` and are re-exported here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from demasked_ros.engines.demasker_net import DemaskerNet, count_parameters
from demasked_ros.training.data import (
    IGNORE_INDEX,
    TrainingDataError,
    default_camvid_root,
    load_frames,
    load_split,
)
from demasked_ros.training.demasker_eval import (
    demask_full_frames,
    evaluate_psnr,
    export_onnx,
    masked_psnr,
    telea_fill,
)
from demasked_ros.training.demasker_losses import (
    disagreement_loss,
    load_frozen_segmenter,
    masked_loss,
    segmentation_loss,
)
from demasked_ros.training.demasker_samples import (
    DEFAULT_FAMILIES,
    EXTRA_FRACTIONS,
    SampleSource,
    build_mask_families,
    to_tensors,
)

__all__ = ["DEFAULT_FAMILIES", "EXTRA_FRACTIONS", "IGNORE_INDEX", "SampleSource", "TrainingDataError",
           "build_mask_families", "demask_full_frames", "disagreement_loss", "evaluate_psnr", "export_onnx",
           "load_frozen_segmenter", "main", "masked_loss", "masked_psnr", "parse_args", "segmentation_loss",
           "telea_fill", "to_tensors"]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options (all defaults reproduce the committed model)."""
    parser = argparse.ArgumentParser(prog="demasked-train demasker", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="CamVid root (default ../shared/data/camvid)")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/demasker"), help="checkpoints and logs")
    parser.add_argument("--export", type=Path, default=None, help="ONNX path (default OUT_DIR/demasker.onnx)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps-per-epoch", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--widths", type=int, nargs=4, default=(16, 32, 64, 96))
    parser.add_argument("--default-probability", type=float, default=0.6,
                        help="share of samples drawn from the node's default mask families")
    parser.add_argument("--no-extra-masks", action="store_true", help="train on the default families only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--max-train-frames", type=int, default=None, help="use the first N frames (tests)")
    parser.add_argument("--val-frames", type=int, default=8, help="val frames scored each epoch (0: none)")
    parser.add_argument("--time-limit-min", type=float, default=None,
                        help="stop after the epoch that passes this many minutes of this run (then export)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from the weights of this checkpoint (fresh optimiser and schedule)")
    parser.add_argument("--seg-checkpoint", type=Path, default=None,
                        help="segmenter_train checkpoint for the segmentation-aware loss")
    parser.add_argument("--seg-weight", type=float, default=0.0,
                        help="weight of the segmentation-aware loss (needs --seg-checkpoint)")
    parser.add_argument("--task-checkpoint", type=Path, default=None,
                        help="frozen segmenter checkpoint for the task-driven (disagreement) loss")
    parser.add_argument("--task-weight", type=float, default=0.0,
                        help="weight of KL(seg(clean) || seg(demasked)) (needs --task-checkpoint)")
    parser.add_argument("--fold", default=None,
                        help="train on CamVid train+val minus this sequence (leave-one-sequence-out), "
                             "'all' for train+val; default: the train split")
    parser.add_argument("--export-only", action="store_true", help="export OUT_DIR/last.pt and exit")
    return parser.parse_args(list(argv))


def _lr_factor(step: int, total: int, warmup: int = 100) -> float:
    """Linear warm-up then cosine decay to 2 % of the base rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))


def main(argv: Sequence[str] | None = None) -> int:
    """Train (or resume, or only export); returns a process exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args)
    except TrainingDataError as error:
        print(f"demasker training: {error}", file=sys.stderr)
        return 2


def _fold_frames(root: Path, args: argparse.Namespace) -> tuple[Any, np.ndarray]:
    """Training frames and PSNR-validation images: the train/val splits, or a fold's two sides."""
    if args.fold is None:
        train_split = load_split(root, "train", max_frames=args.max_train_frames)
        val = load_split(root, "val").images if args.val_frames > 0 else train_split.images[:0]
        return train_split, val
    from demasked_ros.training.folds import FrameRef, all_frames, fold_for

    held: tuple[FrameRef, ...]
    if args.fold == "all":
        train_refs, held = all_frames(root), ()
    else:
        fold = fold_for(root, args.fold)
        train_refs, held = fold.train, fold.held_out
    train_split = load_frames(root, train_refs[: args.max_train_frames])
    if args.val_frames <= 0 or not held:
        return train_split, train_split.images[:0]
    picks = np.linspace(0, len(held) - 1, args.val_frames).round().astype(int)
    return train_split, load_frames(root, [held[i] for i in picks]).images


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, args.threads))
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    export_path: Path = args.export or out_dir / "demasker.onnx"
    torch.manual_seed(args.seed)  # before the model is built: its initial weights are seeded too
    model = DemaskerNet(tuple(args.widths)).to(device)
    checkpoint_path = out_dir / "last.pt"
    if args.export_only:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        error = export_onnx(model, export_path)
        print(f"exported {export_path} (max |ORT - torch| = {error:.2e})")
        return 0

    if args.init is not None:
        model.load_state_dict(torch.load(args.init, map_location=device, weights_only=False)["model"])
    segmenter = None
    if args.seg_weight > 0:
        if args.seg_checkpoint is None:
            raise TrainingDataError("--seg-weight needs --seg-checkpoint")
        segmenter = load_frozen_segmenter(args.seg_checkpoint, device)
    task_segmenter = None
    if args.task_weight > 0:
        if args.task_checkpoint is None:
            raise TrainingDataError("--task-weight needs --task-checkpoint")
        task_segmenter = load_frozen_segmenter(args.task_checkpoint, device)
    root = args.data or default_camvid_root()
    train_split, val = _fold_frames(root, args)
    train = train_split.images
    if args.val_frames > 0 and args.fold is None:
        val = val[np.linspace(0, len(val) - 1, args.val_frames).round().astype(int)]
    height, width = train.shape[1:3]
    families = build_mask_families(height, width, extra=not args.no_extra_masks)
    source = SampleSource(train, families, tuple(args.crop), args.default_probability,
                          labels=train_split.labels if segmenter is not None else None)

    rng = np.random.default_rng(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    total_steps = args.epochs * args.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, total_steps))
    start_epoch, history, elapsed_before = 0, [], 0.0
    if args.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        start_epoch, history, elapsed_before = state["epoch"], state["history"], state["elapsed_s"]
        print(f"resumed from {checkpoint_path} at epoch {start_epoch}")

    print(f"DemaskerNet widths={tuple(args.widths)} params={count_parameters(model)} device={device} "
          f"train frames={len(train)} mask families={len(families)}")
    baseline = evaluate_psnr(None, val, families, device) if len(val) else {}
    if baseline:
        print("TELEA val PSNR on masked pixels: " + json.dumps({k: round(v, 2) for k, v in baseline.items()}))
    started = time.perf_counter() - elapsed_before
    session_started = time.perf_counter()  # the time limit is per invocation, so resumed runs chain
    log_path = out_dir / "metrics.jsonl"
    for epoch in range(start_epoch, args.epochs):
        model.train()
        losses = []
        progress = tqdm(range(args.steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}",
                        mininterval=10.0, file=sys.stderr)
        for _ in progress:
            crops, masks, labels = source.batch(rng, args.batch_size)
            image, visible = to_tensors(crops, masks, device)
            target = torch.from_numpy(crops).to(device).permute(0, 3, 1, 2).float() / 255.0
            output = model(image, visible)
            loss = masked_loss(output, target, visible)
            if segmenter is not None and labels is not None:
                label_tensor = torch.from_numpy(labels.astype(np.int64)).to(device)
                loss = loss + args.seg_weight * segmentation_loss(segmenter, output, label_tensor, visible)
            if task_segmenter is not None:
                loss = loss + args.task_weight * disagreement_loss(task_segmenter, output, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            progress.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
        model.eval()
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                                  "lr": scheduler.get_last_lr()[0],
                                  "elapsed_s": round(time.perf_counter() - started, 1)}
        if len(val):
            record["val_psnr"] = evaluate_psnr(model, val, families, device)
            record["telea_psnr"] = baseline
        history.append(record)
        with log_path.open("a") as log:
            log.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "numpy_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "history": history,
                    "elapsed_s": time.perf_counter() - started, "args": vars(args)},
                   checkpoint_path)
        session_s = time.perf_counter() - session_started
        if args.time_limit_min is not None and session_s > 60 * args.time_limit_min:
            print(f"time limit of {args.time_limit_min} min reached after epoch {epoch + 1}")
            break
    error = export_onnx(model, export_path)
    print(f"exported {export_path} (max |ORT - torch| = {error:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
