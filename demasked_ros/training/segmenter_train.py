"""Train the default CamVid segmenter and export it to ONNX (``demasked-train segmenter ...``).

Reproducible by construction: fixed seeds (torch, numpy), one numpy generator per epoch derived
from (seed, epoch) so a resumed run draws the same batches, a checkpoint after every epoch
(``last.pt``, resumable with ``--resume``) and ``best.pt`` by validation mIoU at 480x360.
Metrics go to ``metrics.jsonl`` in the run folder; progress bars via tqdm. Runs on CPU (one
torch thread by default: two threads collapse under contention on a shared CPU) and on a GPU
when one is present.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from demasked_ros.core.classes import CAMVID
from demasked_ros.engines.segmenter_net import (
    IMAGE_MEAN,
    IMAGE_STD,
    CompactSegNet,
    FullResolutionSegNet,
    count_parameters,
    normalize,
)
from demasked_ros.training.data import (
    FILL_CHOICES,
    IGNORE_INDEX,
    AugmentConfig,
    SegmentationSplit,
    TrainBatches,
    class_weights,
    default_camvid_root,
    load_frames,
    load_split,
)
from demasked_ros.training.folds import FOLD_SEQUENCES, fold_for
from demasked_ros.training.segmenter_model import build_trunk

LOG = logging.getLogger("demasked_ros.training.segmenter")
NUM_CLASSES = CAMVID.num_classes


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``demasked-train segmenter``."""
    p = argparse.ArgumentParser(prog="demasked-train segmenter", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="CamVid root (default: ../shared/data/camvid)")
    p.add_argument("--run-dir", type=Path, default=Path("runs/segmenter"), help="checkpoints + logs")
    p.add_argument("--epochs", type=int, default=120, help="total epochs (may change on --resume)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (poly decay)")
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--warmup-iters", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is robust on a shared CPU)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--downscale", type=int, default=2, help="network runs at 1/downscale resolution")
    p.add_argument("--crop", type=int, nargs=2, default=(176, 240), metavar=("H", "W"))
    p.add_argument("--widths", type=int, nargs=3, default=(24, 48, 96))
    p.add_argument("--decoder-width", type=int, default=48)
    p.add_argument("--demask-aug-prob", type=float, default=0.0,
                   help="probability of replacing a frame by a TELEA-demasked copy under a random mask")
    p.add_argument("--demask-fill", choices=FILL_CHOICES, default="telea",
                   help="how demasked training copies are filled (telea, learned demasker, or mixed)")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs (and at the end)")
    p.add_argument("--max-frames", type=int, default=None, help="use only the first N frames (tests)")
    p.add_argument("--max-steps", type=int, default=None, help="stop each epoch after N steps (tests)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--fold", choices=FOLD_SEQUENCES, default=None,
                   help="leave-one-sequence-out: train on CamVid train+val minus this sequence, score it "
                        "for the learning curve only (--export then takes last.pt, never a checkpoint "
                        "picked on the held-out drive)")
    p.add_argument("--export", type=Path, default=None,
                   help="export best.pt (with --fold: last.pt) to this ONNX file at the end")
    p.add_argument("--no-progress", action="store_true", help="disable tqdm bars")
    return p


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(args: argparse.Namespace) -> CompactSegNet:
    """The trunk described by the command-line options."""
    return CompactSegNet(NUM_CLASSES, widths=tuple(args.widths), decoder_width=args.decoder_width)


def poly_lr(base: float, iteration: int, total: int, warmup: int) -> float:
    """Linear warm-up then polynomial (power 0.9) decay to zero at ``total`` iterations."""
    if iteration < warmup:
        return base * (iteration + 1) / warmup
    progress = min(1.0, (iteration - warmup) / max(1, total - warmup))
    return base * (1.0 - progress) ** 0.9


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """num_classes x num_classes counts (rows = truth), ignoring labels >= num_classes."""
    valid = truth < num_classes
    index = truth[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU (NaN for classes absent from both truth and prediction)."""
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


@torch.no_grad()
def evaluate(model: FullResolutionSegNet, val: SegmentationSplit, device: torch.device) -> dict[str, Any]:
    """Full-resolution validation: mIoU, pixel accuracy and per-class IoU (percent)."""
    model.eval()
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for start in range(0, len(val), 4):
        images = torch.from_numpy(val.images[start : start + 4]).permute(0, 3, 1, 2).to(device)
        pred = model(normalize(images)).argmax(1).cpu().numpy()
        conf += confusion_matrix(pred, val.labels[start : start + 4], NUM_CLASSES)
    iou = iou_from_confusion(conf)
    return {
        "miou": float(np.nanmean(iou) * 100),
        "pixel_acc": float(np.diag(conf).sum() / max(conf.sum(), 1) * 100),
        "per_class_iou": {name: round(float(v) * 100, 2) for name, v in zip(CAMVID.names, iou, strict=True)},
    }


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomic save (write + rename) so an interrupted run never leaves a truncated checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def resume_run(last: Path, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
               device: torch.device) -> dict[str, Any] | None:
    """Load a resumable run's last checkpoint into ``net`` and ``optimizer`` and return its state;
    None when the run has none yet (a fresh start). One place for every trainer that resumes."""
    if not last.exists():
        return None
    state: dict[str, Any] = torch.load(last, map_location=device, weights_only=False)
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state


def run_main(run: Any, argv: Sequence[str] | None,
             parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, Any]:
    """Shared body of the training entry points: logging, argument parsing, and exit code 2 with
    one logged line on bad training data. Returns the arguments and ``run(args)``'s result, or 2
    in its place on such an error."""
    from demasked_ros.training.data import TrainingDataError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parser.parse_args(argv)
    try:
        return args, run(args)
    except TrainingDataError as error:
        LOG.error("%s", error)
        return args, 2


def export_onnx(checkpoint: Path, onnx_path: Path, opset: int = 17) -> dict[str, Any]:
    """Export a checkpoint as ONNX and check it against torch with ONNX Runtime.

    Graph: input ``image`` B x 3 x H x W float RGB normalised with ``IMAGE_MEAN``/``IMAGE_STD``
    (0-255 units; ``OnnxSegmenter`` applies them); outputs ``labels`` B x H x W uint8 (first, what
    ``OnnxSegmenter`` reads) and ``logits`` B x 11 x H x W; batch and spatial size dynamic.
    Class names and normalisation are also written as ONNX metadata.
    Returns the checkpoint's validation record plus ``max_abs_diff`` torch vs ORT.
    """
    import onnx
    import onnxruntime as ort

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = state["config"]
    net = build_trunk(config, NUM_CLASSES)
    net.load_state_dict(state["model"])
    model = FullResolutionSegNet(net, downscale=config["downscale"]).eval()
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (torch.zeros(1, 3, 360, 480),), str(onnx_path), dynamo=False, opset_version=opset,
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "logits": {0: "batch", 2: "height", 3: "width"}},
        )
    proto = onnx.load(str(onnx_path))
    # labels = argmax in the graph (uint8): faster than numpy's argmax over the class axis
    proto.graph.node.append(onnx.helper.make_node("ArgMax", ["logits"], ["argmax"], axis=1, keepdims=0))
    proto.graph.node.append(onnx.helper.make_node("Cast", ["argmax"], ["labels"], to=onnx.TensorProto.UINT8))
    proto.graph.output.insert(0, onnx.helper.make_tensor_value_info(
        "labels", onnx.TensorProto.UINT8, ["batch", "height", "width"]))
    metadata = {"class_names": json.dumps(list(CAMVID.names)), "mean": json.dumps(list(IMAGE_MEAN)),
                "std": json.dumps(list(IMAGE_STD)), "channel_order": "RGB", "ignore_index": "11",
                "epoch": str(state["epoch"]),
                "val_miou": f"{state.get('val', {}).get('miou', float('nan')):.2f}"}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(onnx_path))
    probe = normalize(torch.randint(0, 256, (2, 3, 360, 480), generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        expected = model(probe).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    labels, actual = session.run(["labels", "logits"], {"image": probe.numpy()})
    diff = float(np.abs(actual - expected).max())
    if not np.array_equal(labels, actual.argmax(1)):
        raise RuntimeError(f"{onnx_path}: in-graph labels differ from the argmax of the logits")
    LOG.info("exported %s (epoch %s, val mIoU %s) to %s; max |torch - ORT| = %.2e",
             checkpoint, state["epoch"], metadata["val_miou"], onnx_path, diff)
    return dict(state.get("val", {}), epoch=state["epoch"], params=count_parameters(net), max_abs_diff=diff)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) training; returns the best validation record."""
    device = select_device(args.device)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    seed_everything(args.seed)
    root = args.data or default_camvid_root()
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if args.fold is not None:
        fold = fold_for(root, args.fold)
        LOG.info("%s", fold.describe())
        train_split = load_frames(root, fold.train[:args.max_frames], args.downscale)
        val_split = load_frames(root, fold.held_out[:args.max_frames], 1)
    else:
        train_split = load_split(root, "train", downscale=args.downscale, max_frames=args.max_frames)
        val_split = load_split(root, "val", downscale=1, max_frames=args.max_frames)
    LOG.info("loaded %d train / %d val frames in %.1f s",
             len(train_split), len(val_split), time.time() - started)

    net = build_model(args).to(device)
    model = FullResolutionSegNet(net, downscale=args.downscale)
    weights = torch.from_numpy(class_weights(train_split.labels, NUM_CLASSES)).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    augment = AugmentConfig(crop=tuple(args.crop), demask_probability=args.demask_aug_prob,
                            demask_fill=args.demask_fill)
    batches = TrainBatches(train_split, args.batch_size, augment)
    steps_per_epoch = min(len(batches), args.max_steps or len(batches))
    total_iters = args.epochs * steps_per_epoch
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
              if k in ("widths", "decoder_width", "downscale", "crop", "batch_size", "lr", "weight_decay",
                       "seed", "demask_aug_prob", "epochs", "fold")}
    start_epoch, iteration, best = 0, 0, {"miou": -1.0}
    last = run_dir / "last.pt"
    state = resume_run(last, net, optimizer, device) if args.resume else None
    if state is not None:
        start_epoch, iteration, best = state["epoch"] + 1, state["iteration"], state["best"]
        LOG.info("resumed from %s at epoch %d (best mIoU %.2f)", last, start_epoch, best["miou"])
    LOG.info("model: %d parameters; %d steps/epoch; device %s",
             count_parameters(net), steps_per_epoch, device)

    metrics_file = (run_dir / "metrics.jsonl").open("a")
    for epoch in range(start_epoch, args.epochs):
        net.train()
        rng = np.random.default_rng([args.seed, epoch])
        torch.manual_seed(args.seed * 100_003 + epoch)
        t0, loss_sum, steps = time.time(), 0.0, 0
        bar = tqdm(batches.epoch(rng), total=steps_per_epoch, desc=f"epoch {epoch}",
                   disable=args.no_progress, leave=False)
        for images, labels in bar:
            if steps >= steps_per_epoch:
                break
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(args.lr, iteration, total_iters, args.warmup_iters)
            x = normalize(torch.from_numpy(images).permute(0, 3, 1, 2).to(device))
            y = torch.from_numpy(labels).long().to(device)
            loss = F.cross_entropy(net(x), y, weight=weights, ignore_index=IGNORE_INDEX)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            steps += 1
            iteration += 1
            bar.set_postfix(loss=f"{loss_sum / steps:.3f}")
        record: dict[str, Any] = {
            "epoch": epoch, "iteration": iteration, "loss": loss_sum / max(steps, 1),
            "lr": optimizer.param_groups[0]["lr"], "epoch_s": round(time.time() - t0, 1),
        }
        is_last = epoch == args.epochs - 1
        if (epoch + 1) % args.val_every == 0 or is_last:
            record["val"] = evaluate(model, val_split, device)
        state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                 "iteration": iteration, "config": config, "val": record.get("val", {}), "best": best}
        if "val" in record and record["val"]["miou"] > best["miou"]:
            best = dict(record["val"], epoch=epoch)
            state["best"] = best
            if args.fold is None:  # a fold's held-out drive never picks a checkpoint
                save_checkpoint(run_dir / "best.pt", state)
        save_checkpoint(last, state)
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        LOG.info("epoch %d loss %.4f %s(%.0f s, total %.1f min)", epoch, record["loss"],
                 f"val mIoU {record['val']['miou']:.2f} " if "val" in record else "",
                 record["epoch_s"], (time.time() - started) / 60)
    metrics_file.close()
    chosen = run_dir / ("last.pt" if args.fold is not None else "best.pt")
    if args.export is not None and chosen.exists():
        export_onnx(chosen, args.export)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``demasked-train segmenter``; exit code 0 on success, 2 on bad data."""
    _, best = run_main(train, argv, build_parser())
    if best == 2:
        return 2
    LOG.info("best validation: %s", json.dumps(best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
