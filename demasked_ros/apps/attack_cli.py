"""``demasked-attack``: attack frames with adversarial patches, audit the certificates, score the alarm.

Examples::

    demasked-attack ../shared/data/camvid/val --out runs/atk --mode detection --attack pgd --steps 100
    demasked-attack drive.mcap --out runs/adv --mode recovery --attack adaptive --steps 50 --workers 2
    demasked-attack procedural:20 --out runs/r --attack random --placements 50 --recertify changed

Outputs in ``--out``: ``frames.jsonl`` (one line per frame and placement, written as it goes: a rerun
resumes), ``summary.json``, ``attacked/*.png`` with ``--save-attacked``, and ``violations/`` (frame,
attacked frame and patch position of every certificate violation; there must be none).

Exit codes: 0 done, no violation; 1 some frames failed; 2 bad input; 3 certificate violations found;
130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from demasked_ros.apps.attack_worker import ATTACKS, PLACEMENTS, AttackSpec
from demasked_ros.apps.cli_args import patch_argument
from demasked_ros.apps.evaluate.cli import open_input
from demasked_ros.apps.evaluate.config import EvalConfig, EvaluationError
from demasked_ros.apps.evaluate.engines import EngineFactory
from demasked_ros.apps.evaluate.parallel import EvaluatorSpec, make_executor
from demasked_ros.apps.evaluate.report import write_atomic
from demasked_ros.apps.evaluate.runner import json_line, read_records
from demasked_ros.attacks.errors import AttackError
from demasked_ros.core.alarm import load_calibrations, roc_auc
from demasked_ros.core.classes import CAMVID
from demasked_ros.core.errors import CoreError
from demasked_ros.core.metrics import iou_per_class, nan_mean
from demasked_ros.core.spec import DEFAULT_PATCH
from demasked_ros.datasets.base import DatasetError

JSONL, MANIFEST = "frames.jsonl", "run.json"
#: The shipped calibration of the alarm for the default models.
DEFAULT_CALIBRATION = Path(__file__).resolve().parents[1] / "models" / "alarm_calibration.json"
EFFECTIVE_PCT = 1.0


def build_parser(prog: str = "demasked-attack") -> argparse.ArgumentParser:
    """Command-line interface (shared in part with ``demasked-calibrate``)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="bag, dataset folder or procedural:N[:SEED[:HxW]] (as demasked-eval)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mode", choices=["recovery", "detection"], default="recovery")
    parser.add_argument("--scheme", default="column")
    parser.add_argument("--patch", type=patch_argument, default=None,
                        help="fraction or HxW (default per mode)")
    parser.add_argument("--n-patches", type=int, default=1)
    parser.add_argument("--demasker", default="default")
    parser.add_argument("--segmenter", default="default")
    parser.add_argument("--attack", choices=ATTACKS, default="pgd")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--targeted", default=None, metavar="CLASS", help="class name or id to attack")
    parser.add_argument("--target-mode", choices=["erase", "paint"], default="erase")
    parser.add_argument("--placement", choices=PLACEMENTS, default="random")
    parser.add_argument("--candidates", type=int, default=8, help="G for --placement worst-of")
    parser.add_argument("--placements", type=int, default=1, help="placements per frame")
    parser.add_argument("--hold", type=int, default=1, metavar="N",
                        help="sequence attack: N consecutive frames (by index) share each patch position")
    parser.add_argument("--branch-sample", type=int, default=None,
                        help="adaptive: seeing branches per step (default all)")
    parser.add_argument("--recertify", choices=["full", "changed"], default="full",
                        help="full (exactly the node) or only branches whose masked input changed")
    parser.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION)
    parser.add_argument("--save-attacked", action="store_true")
    parser.add_argument("--save-branches", action="store_true",
                        help="save clean/attacked branch labels (branches/*.npz) for offline alarm studies")
    parser.add_argument("--device", default="cpu", help="torch device for pgd/adaptive")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ray", default=None, metavar="ADDRESS")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    return parser


def make_spec(args: argparse.Namespace, attack: str, class_info: Any) -> AttackSpec:
    """The worker recipe from the parsed arguments."""
    config = EvalConfig(args.mode, args.scheme, args.patch or DEFAULT_PATCH[args.mode],
                        demasker=args.demasker, segmenter=args.segmenter, n_patches=args.n_patches)
    return AttackSpec(
        config=config, attack=attack, steps=args.steps, restarts=args.restarts, targeted=args.targeted,
        target_mode=args.target_mode, placement=args.placement, candidates=args.candidates,
        placements_per_frame=args.placements, hold=args.hold, seed=args.seed, recertify=args.recertify,
        branch_sample=args.branch_sample, device=args.device,
        factory=EngineFactory(class_names=class_info.names,
                              intra_op_threads=1 if args.workers > 1 or args.ray else 2),
        num_classes=class_info.num_classes, ignore_index=class_info.ignore_index,
        out_dir=str(args.out), save_attacked=args.save_attacked,
        save_branches=getattr(args, "save_branches", False))


def with_calibration(spec: AttackSpec, path: Path | None, height: int, width: int) -> AttackSpec:
    """The spec with the calibration entry for its setup, if the file has one (else unchanged)."""
    from dataclasses import replace

    from demasked_ros.core.alarm import calibration_key
    from demasked_ros.engines.factory import calibration_models

    if path is None or not path.is_file():
        return spec
    models = calibration_models(spec.config.segmenter, spec.config.demasker)
    entry = load_calibrations(path).get(calibration_key(spec.config.masks(height, width), models))
    return spec if entry is None else replace(spec, calibration=entry, alarm_params=entry.params)


def run(spec: AttackSpec, source: Any, selected: Sequence[int], out: Path, args: argparse.Namespace,
        run_info: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Attack every (frame, placement) not yet in the JSONL; returns all ok records and interrupted.

    The run's identity includes the model files' fingerprint, so records of a model that has since
    been retrained (same name, other weights) are never resumed into the new model's results."""
    out.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        (out / JSONL).unlink(missing_ok=True)
    records = [r for r in read_records(out / JSONL) if r["status"] == "ok"]
    manifest = out / MANIFEST
    run_info["run"] = {**run_info["run"], "models": spec.factory.fingerprint(spec.config)}
    if records and manifest.is_file() and json.loads(manifest.read_text()).get("run") != run_info["run"]:
        raise EvaluationError(f"{out} holds a different run (other options or model files); "
                              "use another --out or --fresh")
    write_atomic(out / JSONL, "".join(json_line(r) + "\n" for r in records))
    write_atomic(manifest, json.dumps(run_info, indent=2))
    done = {(int(r["index"]), str(r["config"])) for r in records}
    jobs = {i: [f"p{j}" for j in range(spec.placements_per_frame) if (i, f"p{j}") not in done]
            for i in selected}
    todo = {i: pending for i, pending in jobs.items() if pending}
    executor = make_executor(cast(EvaluatorSpec, spec), args.workers, args.ray)
    from tqdm import tqdm

    progress = tqdm(total=len(todo), unit="frame", desc=run_info["run"]["attack"], disable=args.quiet,
                    file=sys.stderr)
    interrupted = False
    try:
        with open(out / JSONL, "a") as jsonl:
            stream = ((r, todo[r.index], False) for r in source.iter_records(set(todo)) if r.index in todo)
            for outcome in executor.map(stream):
                for job in todo[outcome.index]:
                    record = outcome.results[job].record
                    jsonl.write(json_line(record) + "\n")
                    jsonl.flush()
                    records.append(record)
                progress.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
        executor.close()
    return records, interrupted


def summarise(records: Sequence[dict[str, Any]], mode: str, num_classes: int,
              threshold: float | None = None) -> dict[str, Any]:
    """summary.json: the undefended/defended comparison, audit counts and alarm figures.

    Alarm rates apply ``threshold`` (the calibration in use now) to the stored scores, so a run
    made before its setup was calibrated gets alarm figures by rerunning the command.
    """
    ok = [r for r in records if r["status"] == "ok" and "audit" in r]
    clean_by_frame = {r["index"]: r for r in records if r["status"] == "ok"}
    violations = sum(int(r["audit"]["violations"]) for r in ok)
    pixels = [int(r["audit"]["pixels"]) for r in ok]
    effective = [r for r in ok if r["f_changed_pct"] >= EFFECTIVE_PCT]
    clean_scores = [float(r["clean_score"]) for r in clean_by_frame.values()]
    attacked_scores = [float(r["score"]) for r in ok]

    def rate(scores: list[float]) -> float | None:
        return float(np.mean(np.asarray(scores) > threshold)) if scores and threshold is not None else None

    return {
        "frames": len(clean_by_frame), "placements": len(ok),
        "errors": sum(r["status"] != "ok" for r in records), "mode": mode,
        "undefended_mIoU_clean": _miou(ok, "confusion_clean", num_classes),
        "undefended_mIoU_attacked": _miou(ok, "confusion_attacked", num_classes),
        "undefended_changed_pct": _mean([r["f_changed_pct"] for r in ok]),
        "undefended_changed_outside_patch_pct": _mean([r["f_changed_outside_pct"] for r in ok]),
        "certified_flipped": violations if mode == "recovery" else None,
        "verified_flipped": violations if mode == "detection" else None,
        "violations": violations,
        "violation_frames": [[r["index"], r["config"]] for r in ok if r["audit"]["violations"]],
        "uncertified_changed_pct": _mean([100 * r["audit"]["uncertified_changed"] / p
                                          for r, p in zip(ok, pixels, strict=True)]),
        "defended_changed_pct": _mean([100 * r["audit"]["changed"] / p
                                       for r, p in zip(ok, pixels, strict=True)]),
        "alarm_threshold": threshold,
        "alarm_rate_clean": rate(clean_scores),
        "alarm_rate_attacked": rate(attacked_scores),
        "effective_placements": len(effective),
        "alarm_rate_effective": rate([float(r["score"]) for r in effective]),
        "auc_all": roc_auc(clean_scores, attacked_scores) if ok else None,
        "auc_effective": roc_auc(clean_scores, [float(r["score"]) for r in effective]) if effective else None,
        "roi_hit_rate_effective": _mean([float(r["roi_hit"]) for r in effective]),
        "seconds_per_placement": _mean([r["seconds"] for r in ok]),
    }


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _miou(records: Sequence[dict[str, Any]], key: str, num_classes: int) -> float | None:
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    seen: set[int] = set()
    for record in records:
        if key not in record or (key == "confusion_clean" and record["index"] in seen):
            continue
        seen.add(record["index"])
        for truth, pred, count in record[key]:
            confusion[truth, pred] += count
    value = 100 * nan_mean(iou_per_class(confusion)) if confusion.sum() else float("nan")
    return None if math.isnan(value) else value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``demasked-attack``."""
    args = build_parser().parse_args(argv)
    try:
        if args.steps < 0 or min(args.placements, args.workers, args.every, args.hold) < 1:
            raise EvaluationError("--steps must be >= 0; --placements, --workers, --every and --hold >= 1")
        source = open_input(args.input, None, "auto")
        class_info = source.class_info or CAMVID
        selected = list(range(len(source)))[::args.every][:args.limit]
        first = next(iter(source.iter_records({selected[0]}))) if selected else None
        if first is None or not hasattr(first, "image"):
            raise EvaluationError("no readable frame in the input")
        spec = make_spec(args, args.attack, class_info)
        if args.attack in ("pgd", "adaptive"):  # refuse models without a torch twin before any work
            from demasked_ros.attacks.torch_models import TorchPipeline

            TorchPipeline.for_models(args.segmenter, args.demasker, need_demasker=args.attack == "adaptive")
        if args.attack == "natural":  # donors: 8 frames spread over the input (natural image content)
            from dataclasses import replace

            step = max(1, len(source) // 8)
            spec = replace(spec, donors=source, donor_indices=tuple(range(step // 2, len(source), step))[:8])
        spec = with_calibration(spec, args.calibration, *first.image.shape[:2])
        run_info = {"input": args.input, "run": {k: str(v) for k, v in vars(args).items()
                                                  if k not in ("workers", "ray", "fresh", "quiet", "limit")}}
        records, interrupted = run(spec, source, selected, args.out, args, run_info)
    except (EvaluationError, DatasetError, CoreError, AttackError) as error:
        print(f"demasked-attack: error: {error}", file=sys.stderr)
        return 2
    summary = summarise(records, args.mode, class_info.num_classes,
                        None if spec.calibration is None else spec.calibration.threshold)
    summary["calibration"] = None if spec.calibration is None else spec.calibration.key
    write_atomic(args.out / "summary.json", json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "violation_frames"}, indent=1))
    if interrupted:
        return 130
    if summary["violations"]:
        print(f"demasked-attack: CERTIFICATE VIOLATIONS: {summary['violation_frames']} "
              f"(see {args.out / 'violations'})", file=sys.stderr)
        return 3
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
