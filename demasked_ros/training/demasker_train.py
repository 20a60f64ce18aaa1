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
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as functional
from tqdm import tqdm

from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.engines.demasker_net import (
    MODEL_STRIDE,
    ONNX_INPUT_NAMES,
    ONNX_OUTPUT_NAME,
    DemaskerNet,
    count_parameters,
)
from demasked_ros.engines.learned_demasker import STRIDE_METADATA_KEY
from demasked_ros.training.data import (
    IGNORE_INDEX,
    TrainingDataError,
    default_camvid_root,
    load_frames,
    load_split,
)

#: The families the node uses by default, as (label, MaskSet factory arguments).
DEFAULT_FAMILIES = ("recovery-column-0.5%", "detection-column-1%")
EXTRA_FRACTIONS = (0.002, 0.003, 0.0075, 0.01, 0.015, 0.02)


def build_mask_families(height: int, width: int, extra: bool = True) -> dict[str, np.ndarray]:
    """Visibility masks (K x H x W bool) per family name; the default families come first."""
    families = {
        DEFAULT_FAMILIES[0]: recovery_masks(height, width, 0.005, "column").visible,
        DEFAULT_FAMILIES[1]: detection_masks(height, width, 0.01, "column").visible,
    }
    if extra:
        for fraction in EXTRA_FRACTIONS:
            for scheme in ("column", "row", "3-mask", "4-mask"):
                families[f"recovery-{scheme}-{fraction:.2%}"] = recovery_masks(
                    height, width, fraction, scheme
                ).visible
            for axis in ("column", "row"):
                families[f"detection-{axis}-{fraction:.2%}"] = detection_masks(
                    height, width, fraction, axis
                ).visible
    return families


class SampleSource:
    """Deterministic random (crop, mask) training batches drawn from one numpy Generator."""

    def __init__(
        self,
        images: np.ndarray,
        families: dict[str, np.ndarray],
        crop: tuple[int, int],
        default_probability: float,
        labels: np.ndarray | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.families = list(families.values())
        self.crop = crop
        self.default_probability = default_probability
        height, width = images.shape[1:3]
        if crop[0] > height or crop[1] > width or crop[0] % MODEL_STRIDE or crop[1] % MODEL_STRIDE:
            raise TrainingDataError(
                f"crop {crop} must fit in {height}x{width} and be a multiple of {MODEL_STRIDE}"
            )

    def batch(
        self, rng: np.random.Generator, size: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``size`` crops (uint8 B x h x w x 3), their visibility masks (bool B x h x w) and, when
        the source has labels, the cropped labels (B x h x w); the random draws are the same."""
        crop_h, crop_w = self.crop
        height, width = self.images.shape[1:3]
        images, masks, labels = [], [], []
        n_default = len(DEFAULT_FAMILIES)
        for _ in range(size):
            if rng.random() < self.default_probability or len(self.families) == n_default:
                family = self.families[int(rng.integers(n_default))]
            else:
                family = self.families[int(rng.integers(n_default, len(self.families)))]
            mask = family[int(rng.integers(family.shape[0]))]
            index = int(rng.integers(self.images.shape[0]))
            image = self.images[index]
            label = self.labels[index] if self.labels is not None else image[..., 0]
            if rng.random() < 0.5:
                image, label = image[:, ::-1], label[:, ::-1]
            top = int(rng.integers(height - crop_h + 1))
            left = int(rng.integers(width - crop_w + 1))
            images.append(image[top : top + crop_h, left : left + crop_w])
            masks.append(mask[top : top + crop_h, left : left + crop_w])
            labels.append(label[top : top + crop_h, left : left + crop_w])
        return np.stack(images), np.stack(masks), np.stack(labels) if self.labels is not None else None


def to_tensors(
    images: np.ndarray, visible: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 B x H x W x 3 + bool B x H x W -> float NCHW image in [0, 1] and float mask."""
    image = torch.from_numpy(np.array(images, dtype=np.float32)).to(device).permute(0, 3, 1, 2) / 255.0
    mask = torch.from_numpy(np.array(visible, dtype=np.float32)).to(device).unsqueeze(1)
    return image * mask, mask


def masked_loss(output: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """L1 + 0.2 x gradient-L1, both over masked pixels only (gradients between two masked pixels)."""
    hidden = 1.0 - visible
    denominator = hidden.sum().clamp(min=1.0) * 3
    l1 = ((output - target).abs() * hidden).sum() / denominator
    grad = output.new_zeros(())
    for dim in (2, 3):
        d_out, d_tgt = torch.diff(output, dim=dim), torch.diff(target, dim=dim)
        length = hidden.shape[dim] - 1
        both_hidden = hidden.narrow(dim, 1, length) * hidden.narrow(dim, 0, length)
        grad = grad + ((d_out - d_tgt).abs() * both_hidden).sum() / denominator
    return l1 + 0.2 * grad


def load_frozen_segmenter(checkpoint: Path, device: torch.device) -> torch.nn.Module:
    """The segmenter of a ``segmenter_train`` checkpoint, frozen, taking RGB in [0, 1]."""
    from demasked_ros.training.segmenter_model import FullResolutionSegNet, build_trunk

    if not checkpoint.is_file():
        raise TrainingDataError(f"segmenter checkpoint not found: {checkpoint}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = state["config"]
    net = build_trunk(config)
    net.load_state_dict(state["model"])
    model = FullResolutionSegNet(net, downscale=config["downscale"], normalize_input=True).to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def segmentation_loss(
    segmenter: torch.nn.Module, output: torch.Tensor, labels: torch.Tensor, visible: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the frozen segmenter on the demasked crop vs the ground truth, averaged
    over masked, non-void pixels: it pushes the demasker towards fills the segmenter labels right
    (what %C counts), not merely towards low PSNR."""
    logits = segmenter(output * 255.0)
    per_pixel = functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
    weight = (1.0 - visible[:, 0]) * (labels != IGNORE_INDEX).float()
    return (per_pixel * weight).sum() / weight.sum().clamp(min=1.0)


def disagreement_loss(segmenter: torch.nn.Module, output: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Task-driven objective: KL(seg(clean) || seg(demasked)) of the frozen segmenter, mean over
    pixels. Needs no labels: it asks the demasker for fills that the segmenter labels as it labels
    the clean frame, which is exactly what makes the K branches agree (what %C counts), rather
    than for fills that look right pixel by pixel (PSNR)."""
    with torch.no_grad():
        clean_logits = segmenter(clean * 255.0)
        target, log_target = functional.softmax(clean_logits, 1), functional.log_softmax(clean_logits, 1)
    log_branch = functional.log_softmax(segmenter(output * 255.0), 1)
    return (target * (log_target - log_branch)).sum(1).mean()


def masked_psnr(prediction: np.ndarray, target: np.ndarray, visible: np.ndarray) -> float:
    """PSNR (dB, 8-bit) over the masked pixels of one image; ``inf`` when they match exactly."""
    hidden = ~visible
    if not hidden.any():
        return math.inf
    diff = prediction[hidden].astype(np.float64) - target[hidden].astype(np.float64)
    mse = float(np.mean(diff**2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def telea_fill(image: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The classical baseline (as ``TeleaDemasker``): cv2.inpaint TELEA, radius 3."""
    zeroed = np.where(visible[..., None], image, 0).astype(np.uint8)
    return cv2.inpaint(zeroed, (~visible).astype(np.uint8) * 255, 3.0, cv2.INPAINT_TELEA)


@torch.no_grad()
def demask_full_frames(
    model: DemaskerNet, images: np.ndarray, visible: np.ndarray, device: torch.device
) -> np.ndarray:
    """Run the torch model on full frames (padded with masked pixels to the stride, cropped back)."""
    height, width = images.shape[1:3]
    pad_h, pad_w = (-height) % MODEL_STRIDE, (-width) % MODEL_STRIDE
    image, mask = to_tensors(images, visible, device)
    image = functional.pad(image, (0, pad_w, 0, pad_h))
    mask = functional.pad(mask, (0, pad_w, 0, pad_h))
    out = model(image, mask)[:, :, :height, :width]
    out_u8 = (out * 255.0).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
    return np.where(visible[..., None], images, out_u8)


def evaluate_psnr(
    model: DemaskerNet | None,
    images: np.ndarray,
    families: dict[str, np.ndarray],
    device: torch.device,
) -> dict[str, float]:
    """Mean masked-pixel PSNR per default family over ``images`` (TELEA when ``model`` is None)."""
    results: dict[str, float] = {}
    for name in DEFAULT_FAMILIES:
        masks = families[name]
        scores = []
        for image in images:
            batch = np.repeat(image[None], masks.shape[0], axis=0)
            if model is None:
                filled = np.stack([telea_fill(image, m) for m in masks])
            else:
                filled = demask_full_frames(model, batch, masks, device)
            scores += [masked_psnr(f, image, m) for f, m in zip(filled, masks, strict=True)]
        results[name] = float(np.mean(scores))
    return results


def export_onnx(model: DemaskerNet, path: Path, height: int = 368, width: int = 480) -> float:
    """Export to ONNX (opset 17, dynamic batch / height / width); returns max |ORT - torch|."""
    import onnx
    import onnxruntime as ort

    model = model.cpu().eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, height, width, generator=generator)
    mask = (torch.rand(2, 1, height, width, generator=generator) > 0.6).float()
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (image, mask),
            str(path),
            input_names=list(ONNX_INPUT_NAMES),
            output_names=[ONNX_OUTPUT_NAME],
            opset_version=17,
            dynamic_axes={name: dynamic for name in (*ONNX_INPUT_NAMES, ONNX_OUTPUT_NAME)},
            dynamo=False,
        )
    graph = onnx.load(str(path))
    for key, value in ((STRIDE_METADATA_KEY, str(MODEL_STRIDE)), ("demasked_ros.widths", str(model.widths))):
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {ONNX_INPUT_NAMES[0]: image.numpy(), ONNX_INPUT_NAMES[1]: mask.numpy()})
    with torch.no_grad():
        torch_out = model(image, mask).numpy()
    return float(np.abs(onnx_out - torch_out).max())


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
