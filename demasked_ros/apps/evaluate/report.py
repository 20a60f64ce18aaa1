"""summary.json, report.md and figures (paper-style tables, patch-size sweep, per-class bars, examples).

The summary is computed from the restored accumulators only (never from in-memory extras), so a
resumed run and an uninterrupted one write the same numbers. Percentages are 0-100; values that are
undefined (e.g. FAR in recovery mode, metrics without ground truth) are ``null``.

The Markdown tables live in :mod:`~.report_tables`, the figures and example panels in
:mod:`~.report_figures`; their names stay importable from here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demasked_ros.apps.evaluate.config import EvalConfig, patch_label
from demasked_ros.apps.evaluate.report_figures import (
    ExampleWriter,
    captioned,
    example_indices,
    per_class_figure,
    sweep_figure,
)
from demasked_ros.apps.evaluate.report_tables import (
    PAPER_COLUMNS,
    PAPER_HEADER,
    Entry,
    _patch,
    ablation_table,
    drs_table,
    fmt,
    grouped,
    paper_cells,
    paper_comparison,
    per_class_table,
    sweep_groups,
    table1,
)
from demasked_ros.apps.evaluate.runner import ConfigTotals, RunState, clean_json

__all__ = ["METRIC_KEYS", "PAPER_COLUMNS", "PAPER_HEADER", "REPORT_NAME", "SUMMARY_NAME", "Entry",
           "ExampleWriter", "ablation_table", "build_summary", "captioned", "config_summary", "drs_table",
           "example_indices", "fmt", "grouped", "paper_cells", "paper_comparison", "per_class_figure",
           "per_class_table", "shared_big_classes", "sweep_figure", "sweep_groups", "table1",
           "write_atomic", "write_report", "write_summary"]

SUMMARY_NAME = "summary.json"
REPORT_NAME = "report.md"
METRIC_KEYS = ("mIoU", "mR", "cmR", "big_mR", "big_cmR", "pct_certified", "FAR")


def shared_big_classes(state: RunState) -> list[int]:
    """Big classes from the ground truth (appendix H), taken from the configuration that saw the
    most labelled frames, so every row of a report uses the same class set."""
    totals = max(state.totals.values(), key=lambda t: t.metrics.frames, default=None)
    return totals.metrics.big_classes() if totals is not None and totals.metrics.frames else []


def config_summary(config: EvalConfig, totals: ConfigTotals, big: Sequence[int]) -> dict[str, Any]:
    """One configuration's entry of summary.json."""
    metrics = totals.metrics
    summary = metrics.summary(big_classes=big) if metrics.frames else dict.fromkeys(METRIC_KEYS)
    names = metrics.class_names
    latencies = np.asarray(totals.latencies, dtype=np.float64)
    evaluated = max(totals.evaluated, 1)
    entry: dict[str, Any] = {
        "id": config.config_id, "method": config.method, "parameters": config.parameters(),
        **{key: summary.get(key) for key in ("mIoU", "mR", "cmR", "big_mR", "big_cmR", "pct_certified")},
        "FAR": summary.get("FAR") if config.mode == "detection" else None,
        "accuracy": summary.get("accuracy"),
        "frames": metrics.frames,
        "frames_evaluated": totals.evaluated,
        "errors": len(totals.errors),
        "error_frames": totals.errors[:50],
        "seconds": math.fsum(totals.latencies),
        "seconds_per_frame": math.fsum(totals.latencies) / evaluated if totals.evaluated else None,
        "latency_s": ({"mean": float(latencies.mean()), "p50": float(np.percentile(latencies, 50)),
                       "p95": float(np.percentile(latencies, 95)), "max": float(latencies.max())}
                      if latencies.size else None),
        "stage_seconds_per_frame": {stage: seconds / evaluated
                                    for stage, seconds in totals.stage_seconds.items()},
        "certified_pixels_pct": (100 * math.fsum(totals.certified_fractions) / totals.evaluated
                                 if totals.evaluated else None),
        "alert_frames_pct": 100 * totals.alerts / totals.evaluated if totals.evaluated else None,
        "big_classes": [names[c] for c in big],
        "per_class": metrics.per_class() if metrics.frames else [],
    }
    return entry


def build_summary(configs: Sequence[EvalConfig], state: RunState,
                  run_info: Mapping[str, Any]) -> dict[str, Any]:
    """The whole summary.json document (JSON-clean: NaN -> null)."""
    big = shared_big_classes(state)
    document = {
        **run_info,
        "configurations": {c.config_id: config_summary(c, state.totals[c.config_id], big) for c in configs},
    }
    return dict(clean_json(document))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename, so readers never see half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_summary(out_dir: Path, summary: Mapping[str, Any]) -> Path:
    """Write summary.json atomically; returns its path."""
    path = out_dir / SUMMARY_NAME
    write_atomic(path, json.dumps(summary, indent=2) + "\n")
    return path


def write_report(out_dir: Path, summary: Mapping[str, Any], figures: bool = True,
                 configs: Sequence[EvalConfig] = ()) -> Path:
    """Write report.md (and its figures under ``figures/``); returns the report path.

    ``configs`` (the run's configurations) adds a side-by-side comparison with the paper's numbers.
    """
    entries = list(summary["configurations"].values())
    lines = [f"# demasked-eval report: {summary.get('input', '')}", ""]
    status = "complete" if summary.get("complete") else "**partial (interrupted)**"
    lines += [f"- Run: {status}; {summary.get('frames_selected', '?')} frames selected, "
              f"wall time {fmt(summary.get('wall_seconds'), 1)} s, {summary.get('workers', 1)} worker(s).",
              f"- Command: `{summary.get('command', '')}`",
              "- Engines: " + "; ".join(f"{k} = {v}" for k, v in (summary.get("engines") or {}).items()),
              f"- Big classes (> 20 % of the frames they appear in): "
              f"{', '.join(entries[0]['big_classes']) if entries else ''}.", "",
              "## Results (layout of the paper's Table 1)", "", *table1(entries), "",
              "mIoU / mR of detection rows are the clean model's (its output is unchanged); FAR is the "
              "share of correctly classified pixels that raise an alert on clean input.", ""]
    comparison = paper_comparison(configs, summary["configurations"])
    if comparison:
        lines += ["## Next to the paper's numbers", "", *comparison, "",
                  "The paper evaluates ADE20K / COCO-Stuff-10K with large transformer / CNN segmenters "
                  "and ZITS inpainting; rows are comparable in layout, not in value.", ""]
    ablation = ablation_table(entries)
    if ablation:
        lines += ["## Demasking ablation (layout of Table 7)", "", *ablation, ""]
    drs = drs_table(entries)
    if drs:
        lines += ["## De-Randomized Smoothing baselines (layout of Table 10)", "", *drs, "",
                  "DRS rows certify where the vote wins by more than 2T (DRS's margin rule).", ""]
    figure_dir = out_dir / "figures"
    if figures:
        figure_dir.mkdir(exist_ok=True)
        sweep = sweep_figure(entries, figure_dir / "patch_sweep.png")
        if sweep is not None:
            lines += ["## Patch-size sweep (Figure 5)", "", f"![patch-size sweep](figures/{sweep.name})", ""]
    for group in sweep_groups(entries):
        p = group[0]["parameters"]
        lines += [f"Sweep {p['mode']} {p['scheme']} ({p['demasker']}):", "",
                  "| patch " + PAPER_HEADER, "|---" + "|---:" * 7 + "|"]
        lines += [f"| {patch_label(_patch(e['parameters']['patch']))} {paper_cells(e)}" for e in group]
        lines.append("")
    lines += ["## Timing per frame (seconds)", "",
              "| configuration | total | masking | demasking | segmentation | aggregation | p95 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for entry in entries:
        stages = entry["stage_seconds_per_frame"]
        p95 = (entry["latency_s"] or {}).get("p95")
        lines.append(f"| {entry['id']} | {fmt(entry['seconds_per_frame'], 3)} | "
                     + " | ".join(fmt(stages.get(s), 3) for s in ("masking", "demasking", "segmentation",
                                                                    "aggregation"))
                     + f" | {fmt(p95, 3)} |")
    lines.append("")
    lines += ["## Per-class recall / certified recall", "", *per_class_table(entries), ""]
    if figures:
        for entry in entries:
            bars = per_class_figure(entry, figure_dir / f"per_class_{entry['id']}.png")
            if bars is not None:
                lines += [f"![{entry['id']}](figures/{bars.name})", ""]
    errors = [(e["id"], err) for e in entries for err in e["error_frames"]]
    if errors:
        lines += ["## Frames that failed", "", "| configuration | frame | error |", "|---|---|---|"]
        lines += [f"| {cid} | {err['frame']} | {err['error']} |" for cid, err in errors[:100]]
        lines.append("")
    examples = sorted((out_dir / "examples").glob("*.png")) if (out_dir / "examples").is_dir() else []
    if examples:
        lines += ["## Example frames (input | ground truth | output | certification overlay)", ""]
        lines += [f"![{png.stem}](examples/{png.name})" for png in examples]
        lines.append("")
    path = out_dir / REPORT_NAME
    write_atomic(path, "\n".join(lines))
    return path

