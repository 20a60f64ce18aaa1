"""Certification-aware fine-tuning of your own torch segmenter (``demasked-train finetune``).

Why: a segmenter certifies only where its masked-and-demasked branches agree; off-the-shelf models
were never trained on such inputs. This fine-tunes any torch segmenter on any dataset folder that
:func:`~demasked_ros.datasets.base.open_dataset` reads (the CamVid layout, or a registered
reader) with the product's mask families and demasker and the consistency loss of
:mod:`demasked_ros.training.consistency`, then writes ``segmenter.onnx`` (self-contained, labels
computed in the graph) and ``MODEL_CARD.md`` with the recipe and before/after figures.

The model (``--model``): ``package.module:function`` returning an ``nn.Module``, a TorchScript
file, or a ``.pt2`` ``torch.export`` archive. Contract: float32 ``B x 3 x H x W`` RGB in 0..255 ->
logits ``B x C x H x W`` at the input size (``--normalize imagenet`` adds the ImageNet
normalisation in front when your model expects normalised input). ``C`` is the dataset's class
count. Resumable (``--resume``: ``OUT/last.pt`` after every epoch); wall time per epoch is logged.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from demasked_ros.training.consistency import (
    branch_agreement,
    branch_inputs,
    consistency_loss,
    make_filler,
    product_families,
)
from demasked_ros.training.data import AugmentConfig, TrainingDataError, augment
from demasked_ros.training.segmenter_model import normalize

LOG = logging.getLogger("demasked_ros.training.finetune")


class _Normalized(torch.nn.Module):
    """Puts ImageNet normalisation in front of a model that expects normalised input."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """0..255 RGB -> the inner model's logits."""
        return self.inner(normalize(x))


def set_mode(model: torch.nn.Module, train: bool) -> None:
    """``model.train(train)``; a ``.pt2`` program keeps the mode it was exported in (torch cannot
    switch it: export it in eval mode, so batch norm stays frozen while fine-tuning, the usual
    choice with small batches, and the ONNX file is exported in that mode too)."""
    try:
        model.train(train)
    except NotImplementedError:
        LOG.debug("model cannot switch train/eval mode; keeping its exported mode")


def load_model(spec: str) -> torch.nn.Module:
    """``module:function``, a TorchScript file, or a ``.pt2`` exported program -> ``nn.Module``."""
    path = Path(spec)
    if path.suffix == ".pt2":
        if not path.is_file():
            raise TrainingDataError(f"model file not found: {path}")
        return torch.export.load(str(path)).module()
    if path.suffix in (".pt", ".pth", ".ts", ".torchscript"):
        if not path.is_file():
            raise TrainingDataError(f"model file not found: {path}")
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as error:
            raise TrainingDataError(
                f"{path} is not a TorchScript file ({error}); save it with torch.jit.save, "
                "torch.export.save (.pt2) or give module:function") from error
    module_name, _, function = spec.partition(":")
    if not function:
        raise TrainingDataError(f"--model {spec!r}: use module:function, a TorchScript file or a .pt2 file")
    try:
        factory = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as error:
        raise TrainingDataError(f"cannot import {spec}: {error}") from error
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise TrainingDataError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_frames(folder: Path, layout: str | None, split: str, max_frames: int | None
                ) -> tuple[np.ndarray, np.ndarray, Any]:
    """Every labelled frame of ``split`` in memory: images N x H x W x 3, labels N x H x W, class info."""
    from demasked_ros.datasets.base import DatasetError, open_dataset

    try:
        source = open_dataset(folder, layout=layout, split=split)
        images, labels = [], []
        for frame in source:
            if frame.labels is None:
                raise TrainingDataError(f"{frame.name}: fine-tuning needs labelled frames")
            images.append(frame.image)
            labels.append(frame.labels.astype(np.int64))
            if max_frames is not None and len(images) >= max_frames:
                break
    except DatasetError as error:
        raise TrainingDataError(str(error)) from error
    if not images or len({i.shape for i in images}) != 1:
        raise TrainingDataError(f"{folder} {split}: need frames of one size, got {len(images)} frames")
    if source.class_info is None:
        raise TrainingDataError(f"{folder}: the layout gives no class names")
    return np.stack(images), np.stack(labels), source.class_info


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``demasked-train finetune``."""
    p = argparse.ArgumentParser(prog="demasked-train finetune", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="module:function, TorchScript file or .pt2 archive")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (CamVid layout or registered)")
    p.add_argument("--layout", default=None, help="dataset layout name (default: detected)")
    p.add_argument("--split", default="train")
    p.add_argument("--val-split", default=None, help="split for the before/after figures in the card")
    p.add_argument("--out", type=Path, required=True, help="segmenter.onnx, MODEL_CARD.md, checkpoints")
    p.add_argument("--normalize", choices=("none", "imagenet"), default="none")
    p.add_argument("--demasker", default="default", help="default | telea | X.onnx | X.pt (training fills)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, nargs=2, default=None, metavar=("H", "W"), help="default: frame")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--kl-weight", type=float, default=1.0)
    p.add_argument("--branch-ce-weight", type=float, default=0.5)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--eval-frames", type=int, default=8, help="val frames for the card's figures")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    return p


def finetune(args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune, export, write the card; returns the card's facts."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    images, labels, info = load_frames(args.data, args.layout, args.split, args.max_frames)
    model = load_model(args.model)
    if args.normalize == "imagenet":
        model = _Normalized(model)
    height, width = images.shape[1:3]
    crop = tuple(args.crop) if args.crop else (height, width)
    config = AugmentConfig(crop=crop, scale_range=(0.8, 1.25), ignore_index=info.ignore_index)
    families = product_families(height, width)
    filler = make_filler(args.demasker)
    val = None
    if args.val_split:
        val = load_frames(args.data, args.layout, args.val_split, args.eval_frames)
    size = (height, width)
    before = _export_and_score(model, out / "before.onnx", info, val, args.demasker, size) if val else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.steps_per_epoch or max(1, len(images) // args.batch_size)
    start_epoch, history = 0, []
    if args.resume and (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"] + 1, state["history"]
    for epoch in range(start_epoch, args.epochs):
        set_mode(model, True)
        rng = np.random.default_rng([args.seed, epoch])
        t0, total, agreement = time.time(), 0.0, 0.0
        for _ in range(steps):
            picks = rng.integers(len(images), size=args.batch_size)
            views = [augment(images[i], labels[i].astype(np.uint16), config, rng) for i in picks]
            batch = np.stack([v[0] for v in views])
            target = torch.from_numpy(np.stack([v[1] for v in views]).astype(np.int64))
            inputs = branch_inputs(batch, families, filler, rng)
            logits = model(torch.from_numpy(inputs).permute(0, 3, 1, 2).float())
            clean, branches = logits[: len(batch)], logits[len(batch):]
            loss, _ = consistency_loss(clean, branches, target, None, args.branch_ce_weight, args.kl_weight,
                                       ignore_index=info.ignore_index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            agreement += branch_agreement(clean.detach(), branches.detach())
        record = {"epoch": epoch, "loss": total / steps, "agreement": agreement / steps,
                  "epoch_s": round(time.time() - t0, 2)}
        history.append(record)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                    "history": history}, out / "last.pt")
        LOG.info("epoch %d/%d %s", epoch + 1, args.epochs, json.dumps(record))
    after = _export_and_score(model, out / "segmenter.onnx", info, val, args.demasker, size)
    facts = {"model": args.model, "data": str(args.data), "split": args.split, "frames": len(images),
             "classes": list(info.names), "ignore_index": info.ignore_index, "history": history,
             "before": before, "after": after, "args": {k: str(v) for k, v in vars(args).items()}}
    (out / "MODEL_CARD.md").write_text(model_card(facts))
    return facts


def _export_and_score(model: torch.nn.Module, path: Path, info: Any, val: Any, demasker: str,
                      size: tuple[int, int]) -> dict[str, Any]:
    """Export ``model`` to ONNX; with a val set, score clean mIoU and %C on it with the product."""
    set_mode(model, False)
    height, width = size
    export_segmenter(model, path, height, width, list(info.names))
    if not val:
        return {}
    from demasked_ros.core.metrics import CertificationMetrics
    from demasked_ros.engines.certifier import Certifier
    from demasked_ros.engines.segmenters import OnnxSegmenter

    segmenter = OnnxSegmenter(path, class_names=info.names, mean=(0, 0, 0), std=(1, 1, 1), intra_op_threads=1)
    filler = make_filler(demasker)
    scores: dict[str, Any] = {}
    families = product_families(height, width, (0.005,), (0.01,))
    for mode, masks in (("recovery", families.recovery[0]), ("detection", families.detection[0])):
        metrics = CertificationMetrics(len(info.names), info.ignore_index, list(info.names))
        certifier = Certifier(segmenter, filler, masks)
        for image, label in zip(val[0], val[1], strict=True):
            result = certifier.certify(image)
            metrics.add(result.labels, result.certified, label)
        summary = metrics.summary()
        scores[f"{mode} %C"] = summary["pct_certified"]
        if mode == "detection":
            scores.update({"clean mIoU": summary["mIoU"], "detection FAR": summary["FAR"]})
    return scores


def export_segmenter(model: torch.nn.Module, path: Path, height: int, width: int,
                     class_names: Sequence[str]) -> float:
    """ONNX with outputs ``labels`` (uint8 argmax, first) and ``logits``; input 0..255 RGB (mean 0,
    std 1 in the metadata); checked against torch with ONNX Runtime. Returns max |torch - ORT|."""
    import onnx
    import onnxruntime as ort

    path.parent.mkdir(parents=True, exist_ok=True)
    probe = torch.randint(0, 256, (1, 3, height, width), generator=torch.Generator().manual_seed(0)).float()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (probe,), str(path), dynamo=False, opset_version=17, input_names=["image"],
                          training=torch.onnx.TrainingMode.PRESERVE,
                          output_names=["logits"], dynamic_axes={"image": axes, "logits": axes})
    proto = onnx.load(str(path))
    proto.graph.node.append(onnx.helper.make_node("ArgMax", ["logits"], ["argmax"], axis=1, keepdims=0))
    proto.graph.node.append(onnx.helper.make_node("Cast", ["argmax"], ["labels"], to=onnx.TensorProto.UINT8))
    proto.graph.output.insert(0, onnx.helper.make_tensor_value_info("labels", onnx.TensorProto.UINT8, None))
    for key, value in {"class_names": json.dumps(list(class_names)), "mean": "[0, 0, 0]",
                       "std": "[1, 1, 1]", "channel_order": "RGB"}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    with torch.no_grad():
        expected = model(probe).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _, actual = session.run(None, {"image": probe.numpy()})
    return float(np.abs(actual - expected).max())


def model_card(facts: dict[str, Any]) -> str:
    """Markdown card: what was fine-tuned on what, how, and what it certifies before and after."""
    classes = f"{len(facts['classes'])}): {', '.join(facts['classes'])}; void = {facts['ignore_index']}"
    lines = ["# Fine-tuned segmenter: `segmenter.onnx`\n", f"- Base model: `{facts['model']}`",
             f"- Data: `{facts['data']}` split `{facts['split']}`, {facts['frames']} labelled frames",
             f"- Classes ({classes}",
             "- Input: float32 B x 3 x H x W RGB in 0..255 (mean 0, std 1 for `OnnxSegmenter`); outputs "
             "`labels` (uint8) and `logits`",
             "- Recipe: certification-aware fine-tuning (`demasked-train finetune`): per image a masked copy "
             "per mode from the product's recovery / detection families, filled by the demasker; loss = "
             "CE(clean) + w_ce CE(branch) + w_kl KL(clean || branch), clean side stop-gradient.",
             f"- Command arguments: `{json.dumps(facts['args'])}`", "", "## Training", "",
             "| epoch | loss | branch agreement | wall s |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['epoch']} | {r['loss']:.4f} | {r['agreement']:.4f} | {r['epoch_s']} |"
              for r in facts["history"]]
    if facts["before"]:
        lines += ["", "## Before / after (val frames; recovery column 0.5 %, detection column 1 %)", "",
                  "| figure | before | after |", "|---|---:|---:|"]
        lines += [f"| {k} | {facts['before'][k]:.2f} | {facts['after'][k]:.2f} |" for k in facts["before"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``demasked-train finetune``; 0 on success, 2 on bad input."""
    from demasked_ros.training.segmenter_train import run_main

    args, facts = run_main(finetune, argv, build_parser())
    if facts == 2:
        return 2
    LOG.info("wrote %s and %s; after: %s", args.out / "segmenter.onnx", args.out / "MODEL_CARD.md",
             json.dumps(facts["after"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
