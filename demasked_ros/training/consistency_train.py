"""Certification-aware segmenter training on leave-one-sequence-out folds (``demasked-train consistency``).

Trains the deployed graph (``FullResolutionSegNet``: the frame at full resolution in, 2x2 average
inside) on full-resolution crops, so masks are applied exactly as in deployment. Per image, one
masked-and-demasked copy per mode (recovery, detection) is added (``--branches``); the loss is
:func:`~demasked_ros.training.consistency.consistency_loss`. ``--branches 0`` is the plain
baseline with the same data, augmentation and schedule (the ablation's first row).

``--fold SEQ`` trains on CamVid train+val minus sequence SEQ and scores clean mIoU on SEQ after
some epochs (for the learning curve only: the fold figures come from the *last* epoch, scored by
``demasked-train evaluate-folds``, never from a checkpoint picked on the held-out drive);
``--fold all`` trains on every train+val frame (the shipped models, once the folds chose the
recipe). Every run is resumable (``--resume``: ``last.pt`` after each epoch, per-epoch RNG derived
from (seed, epoch)) and logs wall time per epoch to ``log.txt`` and ``metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from demasked_ros.training.consistency import (
    branch_agreement,
    branch_inputs,
    consistency_loss,
    make_filler,
    product_families,
)
from demasked_ros.training.data import (
    SAFETY_CLASSES,
    AugmentConfig,
    SegmentationSplit,
    TrainingDataError,
    augment,
    class_weights,
    default_camvid_root,
    frame_sampling_weights,
    load_frames,
)
from demasked_ros.training.folds import FOLD_SEQUENCES, all_frames, fold_for
from demasked_ros.training.segmenter_model import (
    FullResolutionSegNet,
    build_trunk,
    count_parameters,
    normalize,
)
from demasked_ros.training.segmenter_train import (
    NUM_CLASSES,
    evaluate,
    export_onnx,
    poly_lr,
    resume_run,
    save_checkpoint,
    seed_everything,
    select_device,
)

LOG = logging.getLogger("demasked_ros.training.consistency")
#: Options stored in the checkpoint config (export and resume rebuild the model from them).
CONFIG_KEYS = ("arch", "backbone_stride", "widths", "decoder_width", "downscale", "crop", "batch_size",
               "lr", "weight_decay", "seed", "epochs", "fold", "branches", "kl_weight", "branch_ce_weight",
               "fill", "one_mode", "rare_boost", "safety_weight", "procedural_share", "saturation", "gamma",
               "blur_prob", "noise_std")


#: Options that define the architecture (taken from the ``--init`` checkpoint when given).
ARCH_KEYS = ("arch", "backbone_stride", "widths", "decoder_width", "downscale")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``demasked-train consistency``."""
    p = argparse.ArgumentParser(prog="demasked-train consistency", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="CamVid root (default ../shared/data/camvid)")
    p.add_argument("--fold", required=True, choices=(*FOLD_SEQUENCES, "all"),
                   help="held-out sequence (train on the others) or 'all' (train on train+val)")
    p.add_argument("--run-dir", type=Path, required=True, help="checkpoints, log.txt, metrics.jsonl")
    p.add_argument("--arch", choices=("compact", "lite0"), default="compact")
    p.add_argument("--backbone-stride", type=int, choices=(16, 32), default=16)
    p.add_argument("--no-pretrained", action="store_true", help="lite0 from random weights")
    p.add_argument("--widths", type=int, nargs=3, default=(24, 48, 96))
    p.add_argument("--decoder-width", type=int, default=48)
    p.add_argument("--downscale", type=int, default=2, help="network runs at 1/downscale inside the graph")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--steps-per-epoch", type=int, default=None, help="default: frames // batch")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, nargs=2, default=(352, 480), metavar=("H", "W"),
                   help="full-resolution crop (the mask geometry is that of a 360x480 frame)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--warmup-iters", type=int, default=200)
    p.add_argument("--branches", type=int, default=1, help="masked copies per mode and image (0: plain)")
    p.add_argument("--one-mode", action="store_true",
                   help="each copy uses one random mode (recovery or detection), not one of each")
    p.add_argument("--kl-weight", type=float, default=1.0)
    p.add_argument("--branch-ce-weight", type=float, default=0.5)
    p.add_argument("--fill", default="default", help="training demasker: default | telea | X.onnx | X.pt")
    p.add_argument("--rare-boost", type=float, default=0.0, help="sampling boost of safety-class frames")
    p.add_argument("--safety-weight", type=float, default=1.0, help="extra loss weight of safety classes")
    p.add_argument("--procedural-share", type=float, default=0.0, help="share of procedural scenes")
    p.add_argument("--procedural-frames", type=int, default=48)
    p.add_argument("--jitter", type=float, default=0.2)
    p.add_argument("--saturation", type=float, default=0.0)
    p.add_argument("--gamma", type=float, default=0.0)
    p.add_argument("--blur-prob", type=float, default=0.0)
    p.add_argument("--noise-std", type=float, default=0.0)
    p.add_argument("--strong-aug", action="store_true",
                   help="shorthand: saturation 0.3, gamma 0.3, blur 0.3, noise 6")
    p.add_argument("--eval-every", type=int, default=5, help="held-out clean mIoU every N epochs (0: never)")
    p.add_argument("--eval-stride", type=int, default=3, help="score every Nth held-out frame")
    p.add_argument("--max-frames", type=int, default=None, help="first N frames per side (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--time-limit-min", type=float, default=None, help="stop after the epoch past this")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--export", type=Path, default=None, help="export last.pt to this ONNX file when done")
    return p


def _config(args: argparse.Namespace) -> dict[str, Any]:
    if args.strong_aug:
        args.saturation, args.gamma, args.blur_prob, args.noise_std = 0.3, 0.3, 0.3, 6.0
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items() if k in CONFIG_KEYS}


def procedural_pool(count: int, height: int, width: int, seed: int) -> SegmentationSplit:
    """``count`` procedural street scenes with exact labels (domain randomisation, issue 14)."""
    from demasked_ros.datasets.procedural import street_scene

    scenes = [street_scene(seed * 10_007 + i, height, width) for i in range(count)]
    return SegmentationSplit(np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes]),
                             [f"procedural/{i}" for i in range(count)])


class FoldBatches:
    """Augmented full-resolution batches: safety-weighted frame sampling, optional procedural mix."""

    def __init__(self, split: SegmentationSplit, config: AugmentConfig, batch_size: int,
                 rare_boost: float, procedural: SegmentationSplit | None, procedural_share: float) -> None:
        self.split, self.config, self.batch_size = split, config, batch_size
        self.probabilities = frame_sampling_weights(split.labels, strength=rare_boost)
        self.procedural, self.procedural_share = procedural, procedural_share

    def epoch(self, rng: np.random.Generator, steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``steps`` batches drawn from ``rng`` only (a resumed epoch draws the same batches)."""
        for _ in range(steps):
            images, labels = [], []
            for _ in range(self.batch_size):
                source = self.split
                if self.procedural is not None and rng.random() < self.procedural_share:
                    source, index = self.procedural, int(rng.integers(len(self.procedural)))
                else:
                    index = int(rng.choice(len(self.split), p=self.probabilities))
                view, label = augment(source.images[index], source.labels[index], self.config, rng)
                images.append(view)
                labels.append(label)
            yield np.stack(images), np.stack(labels)


def _load(args: argparse.Namespace, root: Path) -> tuple[SegmentationSplit, SegmentationSplit | None]:
    train_refs: tuple[tuple[str, str], ...]
    held: tuple[tuple[str, str], ...]
    if args.fold == "all":
        train_refs, held = all_frames(root), ()
    else:
        fold = fold_for(root, args.fold)
        LOG.info("%s", fold.describe())
        train_refs, held = fold.train, fold.held_out[:: max(1, args.eval_stride)]
    if args.max_frames is not None:
        train_refs, held = train_refs[: args.max_frames], held[: args.max_frames]
    train = load_frames(root, train_refs)
    return train, (load_frames(root, held) if held and args.eval_every > 0 else None)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) one training; returns the last epoch's record."""
    device = select_device(args.device)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    seed_everything(args.seed)
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    package_log = logging.getLogger("demasked_ros.training")
    package_log.addHandler(handler)
    package_log.setLevel(logging.INFO)  # log.txt records every epoch, whatever the root logger says
    try:
        return _train(args, run_dir, device)
    finally:
        package_log.removeHandler(handler)
        handler.close()


def _train(args: argparse.Namespace, run_dir: Path, device: torch.device) -> dict[str, Any]:
    config = _config(args)
    init_state = None
    if args.init is not None:
        if not args.init.is_file():
            raise TrainingDataError(f"--init checkpoint not found: {args.init}")
        init_state = torch.load(args.init, map_location="cpu", weights_only=False)
        for key in ARCH_KEYS:  # the architecture is the checkpoint's, whatever the command line says
            if key in init_state["config"]:
                config[key] = init_state["config"][key]
                setattr(args, key, init_state["config"][key])
    LOG.info("config %s", json.dumps(config))
    root = args.data or default_camvid_root()
    started = time.time()
    train_split, held_split = _load(args, root)
    LOG.info("loaded %d training / %d held-out frames in %.1f s", len(train_split),
             0 if held_split is None else len(held_split), time.time() - started)

    pretrained = args.arch == "lite0" and not args.no_pretrained and init_state is None
    net = build_trunk(config, NUM_CLASSES, pretrained=pretrained)
    if init_state is not None:
        net.load_state_dict(init_state["model"])
    net.to(device)
    model = FullResolutionSegNet(net, downscale=args.downscale)
    weights = class_weights(train_split.labels, NUM_CLASSES)
    weights[list(SAFETY_CLASSES)] *= args.safety_weight
    class_weight = torch.from_numpy(weights).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    augment_config = AugmentConfig(
        crop=tuple(args.crop), jitter=args.jitter, saturation=args.saturation, gamma=args.gamma,
        blur_probability=args.blur_prob, noise_std=args.noise_std)
    height, width = train_split.labels.shape[1:]
    procedural = (procedural_pool(args.procedural_frames, height, width, args.seed)
                  if args.procedural_share > 0 else None)
    batches = FoldBatches(train_split, augment_config, args.batch_size, args.rare_boost, procedural,
                          args.procedural_share)
    families = product_families(height, width) if args.branches > 0 else None
    filler = make_filler(args.fill) if args.branches > 0 else None
    steps = args.steps_per_epoch or max(1, len(train_split) // args.batch_size)
    total_iters = args.epochs * steps
    start_epoch, iteration, history = 0, 0, []
    last = run_dir / "last.pt"
    state = resume_run(last, net, optimizer, device) if args.resume else None
    if state is not None:
        start_epoch, iteration, history = state["epoch"] + 1, state["iteration"], state["history"]
        LOG.info("resumed from %s at epoch %d", last, start_epoch)
    LOG.info("model %s: %d parameters; %d steps/epoch; device %s", args.arch, count_parameters(net),
             steps, device)

    record: dict[str, Any] = history[-1] if history else {}
    for epoch in range(start_epoch, args.epochs):
        net.train()
        rng = np.random.default_rng([args.seed, epoch])
        torch.manual_seed(args.seed * 100_003 + epoch)
        t0, sums = time.time(), {"loss": 0.0, "agreement": 0.0}
        for images, labels in batches.epoch(rng, steps):
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(args.lr, iteration, total_iters, args.warmup_iters)
            inputs = images
            if families is not None and filler is not None:
                inputs = branch_inputs(images, families, filler, rng, args.branches, args.one_mode)
            n_branch = len(inputs) - len(images)
            # The deployed graph averages the full-resolution (masked, demasked) frame down first;
            # the loss is taken at the network's resolution (labels nearest-sampled, as in load_split).
            x = normalize(torch.from_numpy(inputs).permute(0, 3, 1, 2).to(device))
            ds = args.downscale
            logits = net(F.avg_pool2d(x, ds) if ds > 1 else x)
            small_labels = np.ascontiguousarray(labels[:, ds // 2 :: ds, ds // 2 :: ds])
            y = torch.from_numpy(small_labels).long().to(device)
            y = y[:, : logits.shape[2], : logits.shape[3]]
            clean, branches = logits[: len(images)], logits[len(images):]
            loss, parts = consistency_loss(clean, branches, y, class_weight, args.branch_ce_weight,
                                           args.kl_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iteration += 1
            sums["loss"] += float(loss.detach())
            if n_branch:
                sums["agreement"] += branch_agreement(clean.detach(), branches.detach())
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
        record = {"epoch": epoch, "iteration": iteration, "epoch_s": round(time.time() - t0, 1),
                  "lr": optimizer.param_groups[0]["lr"],
                  **{k: v / steps for k, v in sums.items() if k != "agreement" or families is not None}}
        if held_split is not None and args.eval_every > 0 and ((epoch + 1) % args.eval_every == 0
                                                              or epoch == args.epochs - 1):
            record["held_out"] = {k: v for k, v in evaluate(model, held_split, device).items()
                                  if k in ("miou", "pixel_acc")}
        history.append(record)
        state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                 "iteration": iteration, "config": config, "history": history,
                 "val": {"miou": record.get("held_out", {}).get("miou", float("nan"))}}
        save_checkpoint(last, state)
        with (run_dir / "metrics.jsonl").open("a") as log:
            log.write(json.dumps(record) + "\n")
        LOG.info("epoch %d/%d %s (%.0f s; total %.1f min)", epoch + 1, args.epochs,
                 json.dumps({k: v for k, v in record.items() if k not in ("epoch", "epoch_s")}),
                 record["epoch_s"], (time.time() - started) / 60)
        if args.time_limit_min is not None and time.time() - started > 60 * args.time_limit_min:
            LOG.info("time limit of %.0f min reached; rerun with --resume to continue", args.time_limit_min)
            return record
    if args.export is not None and last.exists():
        export_onnx(last, args.export)
    (run_dir / "DONE").write_text(json.dumps(record) + "\n")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``demasked-train consistency``; 0 on success, 2 on bad data or options."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        train(args)
    except TrainingDataError as error:
        LOG.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
