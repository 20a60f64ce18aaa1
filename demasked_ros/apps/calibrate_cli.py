"""``demasked-calibrate``: calibrate the patch alarm's threshold on clean frames.

Certifies clean frames exactly as the node does, scores each with the patch alarm
(:mod:`demasked_ros.core.alarm`) and writes the threshold that alarms on at most ``--rate`` of them
into a calibration file (merged by setup key: mode, scheme, patch, frame size, K, models). With
``--holdout`` the clean alarm rate is also measured on other frames and stored with the entry.
With ``--temporal CLIP`` it also calibrates the persistent score (:mod:`demasked_ros.core.alarm_temporal`)
on clean *consecutive* frames at the camera rate (every frame of a bag or of a video-rate folder;
frame stamps restart the history at gaps), jointly with the single-frame threshold: at most
``--rate`` of the clip's frames are alarmed by either rule.

Example::

    demasked-calibrate ../shared/data/camvid/train --sequences 0001TP 0006R0 --mode detection \\
        --holdout ../shared/data/camvid/val --out demasked_ros/models/alarm_calibration.json

The alarm is empirical, not certified: calibrate on drives like the ones the robot will see.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from demasked_ros.apps.attack_cli import make_spec, run
from demasked_ros.apps.evaluate.cli import open_input
from demasked_ros.apps.evaluate.config import EvaluationError
from demasked_ros.core.alarm import (
    AlarmCalibration,
    AlarmGeometry,
    AlarmParams,
    alarm_rate,
    calibrate_threshold,
    calibration_key,
    save_calibrations,
)
from demasked_ros.core.alarm_stats import calibrate_joint_threshold
from demasked_ros.core.alarm_temporal import TemporalCalibration, TemporalParams, persistent_scores
from demasked_ros.core.classes import CAMVID
from demasked_ros.core.errors import CoreError
from demasked_ros.datasets.base import DatasetError
from demasked_ros.engines.factory import calibration_models, model_fingerprint


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    from demasked_ros.apps.attack_cli import build_parser as attack_parser

    parser = attack_parser("demasked-calibrate")
    parser.description = __doc__.split("\n\n")[0]
    parser.epilog = "\n\n".join(__doc__.split("\n\n")[1:])
    parser.add_argument("--rate", type=float, default=0.01, help="false-alarm rate (default 0.01)")
    parser.add_argument("--holdout", default=None, help="other clean frames to measure the alarm rate on")
    parser.add_argument("--sequences", nargs="+", default=None,
                        help="only frames whose name starts with one of these (CamVid sequence ids)")
    parser.add_argument("--runs", type=Path, default=Path("runs/calibrate"),
                        help="working folder for the resumable per-frame scores")
    parser.add_argument("--open-radius", type=int, default=AlarmParams.open_radius)
    parser.add_argument("--tolerance", type=int, default=AlarmParams.tolerance)
    parser.add_argument("--reach", type=float, default=AlarmParams.reach)
    parser.add_argument("--temporal", default=None, metavar="CLIP",
                        help="clean consecutive frames (camera rate): also calibrate the persistent score")
    parser.add_argument("--temporal-window", type=int, default=TemporalParams.window)
    parser.add_argument("--temporal-spread", type=int, default=TemporalParams.spread)
    parser.add_argument("--temporal-max-gap", type=float, default=TemporalParams.max_gap)
    parser.set_defaults(attack="none", calibration=None)
    return parser


def clean_records(spec: Any, input_text: str, sequences: Sequence[str] | None, folder: Path,
                  args: argparse.Namespace) -> tuple[list[dict[str, Any]], str, tuple[int, int]]:
    """The ok per-frame records of the selected clean frames, in frame order; also a description
    and the frame size."""
    source = open_input(input_text, None, "auto")
    selected = []
    names: dict[int, str] = {}
    for record in source.iter_records():
        names[record.index] = record.name
        if sequences is None or any(Path(record.name).name.startswith(s) for s in sequences):
            selected.append(record.index)
    selected = selected[::args.every][:args.limit]
    if not selected:
        raise EvaluationError(f"no frame of {input_text} matches --sequences {sequences}")
    first = next(r for r in source.iter_records({selected[0]}))
    if not hasattr(first, "image"):
        raise EvaluationError(f"frame {selected[0]} of {input_text} cannot be read")
    info = {"input": input_text, "run": {"attack": "none", "spec": repr(spec.config),
                                         "params": repr(spec.alarm_params), "sequences": str(sequences)}}
    records, interrupted = run(spec, source, selected, folder, args, info)
    if interrupted:
        raise KeyboardInterrupt
    records = sorted((r for r in records if r["status"] == "ok"), key=lambda r: int(r["index"]))
    chosen = "" if sequences is None else ", sequences " + " ".join(sequences)
    stride = "" if args.every == 1 else f", every {args.every}th"
    what = f"{input_text} ({len(records)} frames{chosen}{stride})"
    return records, what, (int(first.image.shape[0]), int(first.image.shape[1]))


def clean_scores(spec: Any, input_text: str, sequences: Sequence[str] | None, folder: Path,
                 args: argparse.Namespace) -> tuple[list[float], str, tuple[int, int]]:
    """Alarm scores of the selected clean frames; also a description and the frame size."""
    records, what, size = clean_records(spec, input_text, sequences, folder, args)
    return [float(r["clean_score"]) for r in records], what, size


def temporal_calibration(spec: Any, args: argparse.Namespace, single_threshold: float,
                         size: tuple[int, int], folder: Path) -> tuple[TemporalCalibration, dict[str, Any]]:
    """The persistent-score threshold on the clean clip ``--temporal`` (every frame, in order),
    joint with the single-frame threshold; also what was measured on the clip."""
    params = TemporalParams(args.temporal_window, args.temporal_spread, args.temporal_max_gap)
    every_frame = argparse.Namespace(**{**vars(args), "every": 1, "limit": None})
    records, what, clip_size = clean_records(replace(spec, keep_positions=True), args.temporal, None, folder,
                                             every_frame)
    if clip_size != size:
        raise EvaluationError(f"--temporal frames are {clip_size}, the calibration frames {size}")
    grid = AlarmGeometry(spec.config.masks(*size), spec.alarm_params).grid_shape
    persistent = persistent_scores([np.asarray(r["clean_positions"]) for r in records], grid, params,
                                   [int(r["stamp_ns"]) * 1e-9 for r in records])
    single = np.array([float(r["clean_score"]) > single_threshold for r in records])
    threshold = calibrate_joint_threshold(persistent, single, args.rate)
    alarmed = single | (persistent > threshold)
    measured = {"temporal_clip": what, "clip_alarm_rate": float(alarmed.mean()),
                "clip_single_alarm_rate": float(single.mean())}
    return TemporalCalibration(threshold, args.rate, len(records), params, data=what), measured


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``demasked-calibrate``; exit 0 on success, 2 on bad input, 130 interrupted."""
    args = build_parser().parse_args(argv)
    try:
        if not 0.0 <= args.rate < 1.0:
            raise EvaluationError("--rate must be in [0, 1)")
        params = AlarmParams(open_radius=args.open_radius, tolerance=args.tolerance, reach=args.reach)
        spec = replace(make_spec(args, "none", CAMVID), alarm_params=params, out_dir=None)
        tag = f"{args.mode}-{args.scheme}-{args.patch}"
        scores, what, (height, width) = clean_scores(spec, args.input, args.sequences,
                                                     args.runs / f"{tag}-calibration", args)
        threshold = calibrate_threshold(scores, args.rate)
        measured: dict[str, Any] = {"calibration_alarm_rate": alarm_rate(scores, threshold)}
        if args.holdout:
            held, held_what, _ = clean_scores(spec, args.holdout, None, args.runs / f"{tag}-holdout", args)
            measured.update(holdout=held_what, holdout_alarm_rate=alarm_rate(held, threshold),
                            holdout_frames=len(held))
        models = calibration_models(args.segmenter, args.demasker)
        key = calibration_key(spec.config.masks(height, width), models)
        temporal = None
        if args.temporal:
            temporal, clip = temporal_calibration(spec, args, threshold, (height, width),
                                                  args.runs / f"{tag}-temporal")
            measured.update(clip)
        entry = AlarmCalibration(key, threshold, args.rate, len(scores), params, data=what, measured=measured,
                                 temporal=temporal,
                                 models_sha256=model_fingerprint(args.segmenter, args.demasker))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_calibrations(args.out, [entry])
    except KeyboardInterrupt:
        print("demasked-calibrate: interrupted (rerun to resume)", file=sys.stderr)
        return 130
    except (EvaluationError, DatasetError, CoreError) as error:
        print(f"demasked-calibrate: error: {error}", file=sys.stderr)
        return 2
    held_out = (f"; held out: {measured['holdout_alarm_rate']:.3f} on {measured['holdout']}"
                if args.holdout else "")
    persistent = ("" if entry.temporal is None else
                  f"; persistent threshold {entry.temporal.threshold:.4g} (window {args.temporal_window}: "
                  f"alarm rate {measured['clip_alarm_rate']:.3f} on {measured['temporal_clip']})")
    print(f"{key}: threshold {threshold:.4g} (alarm rate {measured['calibration_alarm_rate']:.3f} on {what})"
          + held_out + persistent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
