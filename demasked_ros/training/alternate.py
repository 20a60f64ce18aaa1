"""Alternating rounds of segmenter and task-driven demasker fine-tuning (``demasked-train alternate``).

Round r (1-based), in ``RUN_DIR/round{r}/``:

1. ``seg/``: consistency training of the segmenter (``demasked-train consistency``), starting from
   the previous round's segmenter, with masked copies filled by the previous round's demasker
   (a torch checkpoint, so the fills are exactly what that demasker produces);
2. ``dem/``: task-driven fine-tuning of the demasker (``demasked-train demasker --task-weight``):
   the frozen segmenter of step 1 should label its fills as it labels the clean frame;
3. ``folds.json``: with ``--evaluate``, the fold row of the round's pair (segmenter ONNX +
   demasker ONNX) on the held-out sequence, so the table shows what each round adds.

Every step is resumable and skipped once complete (``DONE`` marker / final epoch reached), so the
same command continues across sessions. Extra options go to the steps verbatim (``--seg-args``,
``--dem-args``, each one shell-quoted string).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from demasked_ros.training import consistency_train, demasker_train
from demasked_ros.training.folds import FOLD_SEQUENCES


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``demasked-train alternate``."""
    p = argparse.ArgumentParser(prog="demasked-train alternate", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--fold", required=True, choices=(*FOLD_SEQUENCES, "all"))
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seg-init", type=Path, required=True, help="segmenter checkpoint to start from")
    p.add_argument("--dem-init", type=Path, required=True, help="demasker_train checkpoint to start from")
    p.add_argument("--seg-epochs", type=int, default=4)
    p.add_argument("--dem-epochs", type=int, default=4)
    p.add_argument("--dem-steps", type=int, default=100, help="demasker steps per epoch")
    p.add_argument("--task-weight", type=float, default=1.0)
    p.add_argument("--seg-args", default="", help="extra `demasked-train consistency` options")
    p.add_argument("--dem-args", default="", help="extra `demasked-train demasker` options")
    p.add_argument("--evaluate", action="store_true", help="fold row of each round (held-out frames)")
    p.add_argument("--eval-every", type=int, default=1, help="score every Nth held-out frame")
    return p


def _demasker_done(out_dir: Path, epochs: int) -> bool:
    last = out_dir / "last.pt"
    return last.is_file() and torch.load(last, map_location="cpu", weights_only=False)["epoch"] >= epochs


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    """Run (or continue) the rounds; returns the fold rows written so far."""
    data = ["--data", str(args.data)] if args.data else []
    seg_ckpt, dem_ckpt = args.seg_init, args.dem_init
    rows: list[dict[str, object]] = []
    for r in range(1, args.rounds + 1):
        round_dir = args.run_dir / f"round{r}"
        seg_dir, dem_dir = round_dir / "seg", round_dir / "dem"
        if not (seg_dir / "DONE").is_file():
            seg_argv = [*data, "--fold", args.fold, "--run-dir", str(seg_dir), "--init", str(seg_ckpt),
                        "--fill", str(dem_ckpt), "--epochs", str(args.seg_epochs), "--warmup-iters", "1",
                        "--export", str(seg_dir / "segmenter.onnx"), *shlex.split(args.seg_args)]
            if (seg_dir / "last.pt").is_file():
                seg_argv.append("--resume")
            if consistency_train.main(seg_argv) != 0 or not (seg_dir / "DONE").is_file():
                raise SystemExit(f"segmenter step of round {r} did not finish; rerun to continue")
        seg_ckpt = seg_dir / "last.pt"
        if not _demasker_done(dem_dir, args.dem_epochs):
            dem_argv = [*data, "--fold", args.fold, "--out-dir", str(dem_dir), "--init", str(dem_ckpt),
                        "--task-checkpoint", str(seg_ckpt), "--task-weight", str(args.task_weight),
                        "--epochs", str(args.dem_epochs), "--steps-per-epoch", str(args.dem_steps),
                        *shlex.split(args.dem_args)]
            if (dem_dir / "last.pt").is_file():
                dem_argv.append("--resume")
            if demasker_train.main(dem_argv) != 0 or not _demasker_done(dem_dir, args.dem_epochs):
                raise SystemExit(f"demasker step of round {r} did not finish; rerun to continue")
        dem_ckpt = dem_dir / "last.pt"
        if args.evaluate and args.fold != "all":
            rows.append(_evaluate_round(args, r, seg_dir / "segmenter.onnx", dem_dir / "demasker.onnx"))
    return rows


def _evaluate_round(args: argparse.Namespace, r: int, segmenter: Path, demasker: Path) -> dict[str, object]:
    from demasked_ros.training import fold_eval

    out = args.run_dir / f"round{r}" / "folds.json"
    argv = ["--folds", args.fold, "--segmenter", str(segmenter), "--demasker", str(demasker),
            "--every", str(args.eval_every), "--out", str(out)]
    if args.data:
        argv += ["--data", str(args.data)]
    if fold_eval.main(argv) != 0:
        raise SystemExit(f"evaluation of round {r} failed")
    row: dict[str, object] = json.loads(out.read_text())["folds"][0]
    return {"round": r, **row}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``demasked-train alternate``."""
    args = build_parser().parse_args(argv)
    rows = run(args)
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
