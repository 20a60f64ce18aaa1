"""``demasked-eval``: replay a bag or dataset through many certifiers and report the paper's metrics.

Examples::

    demasked-eval ../shared/data/camvid/val --out runs/val --config table1 --demasker telea
    demasked-eval drive.mcap --out runs/drive --mode detection --scheme column row --patch 0.01
    demasked-eval bag_dir/ --out runs/b --workers 2          # local worker processes
    demasked-eval bag_dir/ --out runs/b --ray auto           # a Ray cluster (or a local instance)

Outputs in ``--out``: ``frames.jsonl`` (one line per frame and configuration), ``summary.json``,
``report.md`` with ``figures/`` and ``examples/``, and with ``--output-bag`` a rosbag2 ``output_bag/``.
Rerunning the same command resumes: frames already in ``frames.jsonl`` are skipped.

Exit codes: 0 all frames evaluated; 1 finished but some frames failed (listed in the summary and
report); 2 bad input or configuration; 130 interrupted (partial summary written, resumable).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from demasked_ros.apps.cli_args import patch_argument
from demasked_ros.apps.evaluate.config import (
    DEMASKERS,
    EvalConfig,
    EvaluationError,
    GridSpec,
    load_config_file,
    unique,
)
from demasked_ros.apps.evaluate.engines import EngineFactory
from demasked_ros.apps.evaluate.output_bag import BagOutput
from demasked_ros.apps.evaluate.parallel import EvaluatorSpec, make_executor
from demasked_ros.apps.evaluate.report import (
    ExampleWriter,
    build_summary,
    example_indices,
    write_atomic,
    write_report,
    write_summary,
)
from demasked_ros.apps.evaluate.runner import (
    JSONL_NAME,
    FrameSink,
    RunState,
    evaluate_frames,
    json_line,
    read_records,
)
from demasked_ros.core.classes import CAMVID
from demasked_ros.core.spec import DEFAULT_PATCH
from demasked_ros.datasets.base import DatasetError, FrameSource

BAG_SUFFIXES = (".mcap", ".db3")
OUTPUT_BAG = "output_bag"
RUN_NAME = "run.json"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (kept stable: see issue 5)."""
    parser = argparse.ArgumentParser(prog="demasked-eval", description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="rosbag2 (directory, .mcap or .db3), dataset folder (e.g. CamVid "
                                      "or its val/ split), or procedural:N[:SEED[:HxW]] for synthetic frames")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; reruns resume)")
    parser.add_argument("--image-topic", default=None, help="bag camera topic (default: the only one)")
    parser.add_argument("--label-topic", default="auto",
                        help="bag ground-truth topic; 'auto' (a topic named *label*) or 'none'")
    parser.add_argument("--mode", nargs="+", choices=["recovery", "detection"], default=["recovery"])
    parser.add_argument("--scheme", nargs="+", default=["column"],
                        help="recovery: column row 3-mask 4-mask drs-s drs-e; detection: column row block")
    parser.add_argument("--patch", nargs="+", type=patch_argument, default=None,
                        help="patch fraction(s) of the image area or HxW pixels "
                             "(default 0.005 recovery, 0.01 detection)")
    parser.add_argument("--config", default=None,
                        help="YAML/JSON file of configurations, or a preset: table1, ablation, demaskers, "
                             "sweep, paper")
    parser.add_argument("--demasker", nargs="+", choices=DEMASKERS, default=None,
                        help="demasker(s): default (the packaged learned model, TELEA when absent), "
                             "learned, telea, ns, solid (= no demasking)")
    parser.add_argument("--segmenter", nargs="+", default=None,
                        help="'default' (packaged model) or PATH.onnx (default: default)")
    parser.add_argument("--output-bag", action="store_true",
                        help="also write output_bag/ with the node's topics for the first configuration "
                             "(which is then always evaluated in full, also when resuming)")
    parser.add_argument("--bag-storage", choices=["mcap", "sqlite3"], default="mcap")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="run on Ray: a cluster address, 'auto' (running cluster, else local) or 'local'")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most N frames")
    parser.add_argument("--every", type=int, default=1, help="evaluate every N-th frame (default 1)")
    parser.add_argument("--examples", type=int, default=2, help="example frames drawn per configuration")
    parser.add_argument("--threads", type=int, default=2, help="inference threads (single process)")
    parser.add_argument("--providers", nargs="+", default=["cpu"],
                        help="ONNX Runtime providers for the segmenter, e.g. cuda cpu (default cpu)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0,
                        help="with --ray: GPUs each Ray worker reserves (use with --providers cuda)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier results in --out")
    parser.add_argument("--no-figures", action="store_true", help="skip matplotlib figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def configurations(args: argparse.Namespace) -> list[EvalConfig]:
    """Configurations from ``--config`` or the grid flags."""
    engines = {key: value[0] for key, value in (("demasker", args.demasker), ("segmenter", args.segmenter))
               if value is not None and len(value) == 1}
    if args.config is not None:
        if (args.demasker and len(args.demasker) > 1) or (args.segmenter and len(args.segmenter) > 1):
            raise EvaluationError("with --config, give at most one --demasker / --segmenter default")
        return load_config_file(args.config, engines)
    configs: list[EvalConfig] = []
    for mode in args.mode:
        configs += GridSpec(modes=[mode], schemes=args.scheme,
                            patches=args.patch or [DEFAULT_PATCH[mode]],
                            demaskers=args.demasker or ["default"],
                            segmenters=args.segmenter or ["default"]).expand()
    return unique(configs)


def open_input(text: str, image_topic: str | None, label_topic: str | None) -> FrameSource:
    """A frame source for INPUT: bag, dataset folder or ``procedural:N[:SEED[:HxW]]``."""
    if text.startswith("procedural:"):
        from demasked_ros.datasets.procedural import ProceduralSource

        try:
            parts = text.split(":")[1:]
            height, width = (int(v) for v in parts[2].lower().split("x")) if len(parts) > 2 else (360, 480)
            return ProceduralSource(int(parts[0]), seed=int(parts[1]) if len(parts) > 1 else 0,
                                    height=height, width=width)
        except (ValueError, IndexError) as error:
            raise EvaluationError(f"procedural input is procedural:N[:SEED[:HxW]], got {text!r}") from error
    path = Path(text)
    if not path.exists():
        raise EvaluationError(f"input {path} does not exist")
    if path.suffix in BAG_SUFFIXES or (path.is_dir() and (path / "metadata.yaml").is_file()):
        from demasked_ros.rosio.bagio import AUTO, BagFrameSource

        label = None if label_topic in (None, "none") else (AUTO if label_topic == "auto" else label_topic)
        return BagFrameSource(path, image_topic=image_topic, label_topic=label)
    from demasked_ros.datasets.base import open_dataset

    return open_dataset(path)


def describe(engine: object) -> str:
    """``ClassName`` or ``ClassName(model.onnx)`` for the report."""
    path = getattr(engine, "model_path", None) or getattr(engine, "path", None)
    return f"{type(engine).__name__}({Path(path).name})" if path else type(engine).__name__


def prepare_output(out: Path, run_info: dict[str, Any], fresh: bool,
                   redo: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Create ``out``; return the earlier run's ok records (for resume), after checking it matches.

    The JSONL is rewritten without a torn last line, without earlier error records (those frames
    are retried) and without the records of configurations in ``redo`` or whose models changed
    (those are evaluated again), so later appends keep it valid and nothing is counted twice.
    """
    out.mkdir(parents=True, exist_ok=True)
    jsonl, manifest = out / JSONL_NAME, out / RUN_NAME
    if fresh:
        for name in (JSONL_NAME, RUN_NAME, "summary.json", "report.md"):
            (out / name).unlink(missing_ok=True)
        for folder in ("examples", "figures", OUTPUT_BAG):
            shutil.rmtree(out / folder, ignore_errors=True)
    records = read_records(jsonl)
    if records and manifest.is_file():
        earlier = json.loads(manifest.read_text())
        if earlier.get("input") != run_info["input"]:
            raise EvaluationError(f"{out} holds results for {earlier.get('input')!r}, not "
                                  f"{run_info['input']!r}; use another --out or --fresh")
    fingerprints: dict[str, str] = run_info["fingerprints"]
    earlier_prints = json.loads(manifest.read_text()).get("fingerprints", {}) if manifest.is_file() else {}
    changed = {cid for cid, value in earlier_prints.items() if fingerprints.get(cid, value) != value}
    changed |= set(redo)
    for cid in sorted(changed):
        if cid not in redo:
            print(f"demasked-eval: the models of {cid} changed since the earlier run; re-evaluating it",
                  file=sys.stderr)
    kept = [r for r in records if r["status"] == "ok" and r["config"] not in changed]
    write_atomic(jsonl, "".join(json_line(r) + "\n" for r in kept))
    manifest_data = {"input": run_info["input"], "source": run_info["source"],
                     "fingerprints": {**earlier_prints, **fingerprints}}
    write_atomic(manifest, json.dumps(manifest_data, indent=2))
    return kept


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``demasked-eval``; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        if (args.limit is not None and args.limit < 1) or args.every < 1 or args.workers < 1:
            raise EvaluationError("--limit, --every and --workers must be positive")
        configs = configurations(args)
        source = open_input(args.input, args.image_topic, args.label_topic)
        class_info = source.class_info or CAMVID
        if source.class_info is None:
            print("demasked-eval: the input names no label set; assuming CamVid's", file=sys.stderr)
        selected = list(range(len(source)))[::args.every][:args.limit]
        input_name = args.input if args.input.startswith("procedural:") else str(Path(args.input).resolve())
        run_info: dict[str, Any] = {
            "input": input_name, "source": repr(source), "frames_selected": len(selected),
            "every": args.every, "limit": args.limit, "workers": args.workers, "ray": args.ray,
            "command": "demasked-eval " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        }
        parallel = args.workers > 1 or args.ray is not None
        factory = EngineFactory(class_names=class_info.names, providers=tuple(args.providers),
                                intra_op_threads=1 if parallel else args.threads)
        # Build every engine once up front: a missing or broken model fails early (exit 2), and the
        # report names what actually ran (e.g. "default" demasker = TELEA while no model is installed).
        segmenters, demaskers = sorted({c.segmenter for c in configs}), sorted({c.demasker for c in configs})
        run_info["engines"] = {**{f"segmenter {n}": describe(factory.segmenter(n)) for n in segmenters},
                               **{f"demasker {n}": describe(factory.demasker(n)) for n in demaskers}}
        run_info["fingerprints"] = {c.config_id: factory.fingerprint(c) for c in configs}
        # The output bag must hold every frame, so its configuration is always evaluated in full.
        redo = [configs[0].config_id] if args.output_bag else []
        records = prepare_output(args.out, run_info, args.fresh, redo)
        state = RunState.restore(records, configs, class_info.num_classes, class_info.ignore_index,
                                 class_info.names)
        ids = [c.config_id for c in configs]
        todo = {i: [c for c in ids if (i, c) not in state.done] for i in selected}
        todo = {i: pending for i, pending in todo.items() if pending}
        examples = example_indices(selected, args.examples)
        sinks: list[FrameSink] = [ExampleWriter(args.out, examples, class_info)]
        if args.output_bag:
            sinks.append(BagOutput(args.out / OUTPUT_BAG, configs[0], class_info, args.bag_storage))
        spec = EvaluatorSpec(tuple(configs), factory, class_info.num_classes, class_info.ignore_index)
        executor = make_executor(spec, args.workers, args.ray, args.gpus_per_worker)
    except (EvaluationError, DatasetError) as error:
        print(f"demasked-eval: error: {error}", file=sys.stderr)
        return 2
    interrupted, failure = False, None
    from tqdm import tqdm

    progress = tqdm(total=len(todo), unit="frame", desc="demasked-eval", disable=args.quiet,
                    file=sys.stderr, smoothing=0.1)
    try:
        with open(args.out / JSONL_NAME, "a") as jsonl:
            evaluate_frames(source.iter_records(set(todo)), todo, executor, state, jsonl, sinks, progress)
    except KeyboardInterrupt:
        interrupted = True
    except (EvaluationError, DatasetError) as error:
        failure = str(error)
    finally:
        progress.close()
        executor.close()
        for sink in sinks:
            sink.close()
    run_info.update(complete=not (interrupted or failure), error=failure,
                    wall_seconds=time.perf_counter() - started)
    summary = build_summary(configs, state, run_info)
    write_summary(args.out, summary)
    write_report(args.out, summary, figures=not args.no_figures, configs=configs)
    print_table(summary)
    if interrupted:
        print(f"demasked-eval: interrupted; partial results in {args.out} (rerun to resume)", file=sys.stderr)
        return 130
    if failure:
        print(f"demasked-eval: error: {failure}", file=sys.stderr)
        return 2
    failed = sum(entry["errors"] for entry in summary["configurations"].values())
    if failed:
        print(f"demasked-eval: {failed} frame evaluations failed; see {args.out / 'summary.json'}",
              file=sys.stderr)
        return 1
    return 0


def print_table(summary: dict[str, Any]) -> None:
    """A short results table on stdout."""
    keys = ("mIoU", "mR", "cmR", "big_mR", "big_cmR", "pct_certified", "FAR")
    print(f"{'configuration':48s} " + " ".join(f"{k:>8s}" for k in keys) + "   frames  s/frame")
    for cid, entry in summary["configurations"].items():
        cells = " ".join("     N/A" if entry[k] is None else f"{entry[k]:8.2f}" for k in keys)
        per_frame = "N/A" if entry["seconds_per_frame"] is None else f"{entry['seconds_per_frame']:.3f}"
        print(f"{cid:48s} {cells} {entry['frames']:8d} {per_frame:>8s}")


if __name__ == "__main__":
    sys.exit(main())
