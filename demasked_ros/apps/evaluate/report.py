"""summary.json, report.md and figures (paper-style tables, patch-size sweep, per-class bars, examples).

The summary is computed from the restored accumulators only (never from in-memory extras), so a
resumed run and an uninterrupted one write the same numbers. Percentages are 0-100; values that are
undefined (e.g. FAR in recovery mode, metrics without ground truth) are ``null``.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demasked_ros.apps.evaluate.config import EvalConfig, paper_rows, patch_label
from demasked_ros.apps.evaluate.runner import ConfigTotals, FrameOutcome, RunState, clean_json
from demasked_ros.core.classes import ClassInfo
from demasked_ros.core.visualize import colorize, overlay

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


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: numbers with ``digits`` decimals, ``N/A`` for missing values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "N/A"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


PAPER_COLUMNS = ("mIoU", "big_mR", "big_cmR", "mR", "cmR", "pct_certified", "FAR")
PAPER_HEADER = "| mIoU | big mR | big cmR | all mR | all cmR | %C | FAR ↓ |"


def paper_cells(entry: Mapping[str, Any]) -> str:
    """The metric cells of a row laid out like the paper's Tables 1, 7 and 10."""
    return "| " + " | ".join(fmt(entry[key]) for key in PAPER_COLUMNS) + " |"


def table1(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Rows grouped by mode and patch, one per scheme / demasker / segmenter (Table 1 layout)."""
    lines = ["| mode | patch | mask | demasker | segmenter " + PAPER_HEADER + " frames | s / frame |",
             "|---|---|---|---|---" + "|---:" * (len(PAPER_COLUMNS) + 2) + "|"]
    order = sorted(entries, key=lambda e: (e["parameters"]["mode"] != "detection",
                                           _patch_key(e["parameters"]["patch"])))
    for entry in order:
        p = entry["parameters"]
        lines.append(f"| {p['mode']} | {patch_label(_patch(p['patch']))} | {p['scheme']} | {p['demasker']} "
                     f"| {Path(p['segmenter']).stem} {paper_cells(entry)} {entry['frames']} "
                     f"| {fmt(entry['seconds_per_frame'])} |")
    return lines


def _patch(value: Any) -> float | tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, list) else float(value)


def _patch_key(value: Any) -> float:
    return float(value[0] * value[1]) if isinstance(value, list) else float(value)


Entry = Mapping[str, Any]


def grouped(entries: Iterable[Entry], vary: str) -> dict[tuple[Any, ...], list[Entry]]:
    """Entries that differ only in parameter ``vary`` (groups of two or more)."""
    groups: dict[tuple[Any, ...], list[Entry]] = defaultdict(list)
    for entry in entries:
        params = entry["parameters"]
        key = tuple(json.dumps(params[k]) for k in sorted(params) if k != vary)
        groups[key].append(entry)
    return {key: group for key, group in groups.items() if len(group) > 1}


def paper_comparison(configs: Sequence[EvalConfig], entries: Mapping[str, Entry]) -> list[str]:
    """Our rows next to the paper's for the configurations the paper reports (Tables 1, 7, 10)."""
    lines: list[str] = []
    for config in configs:
        rows = paper_rows(config)
        if not rows:
            continue
        if not lines:
            lines = ["| configuration | result of " + PAPER_HEADER, "|---|---" + "|---:" * 7 + "|"]
        ours = entries[config.config_id]
        label = f"{config.mode} {config.scheme} {patch_label(config.patch)} {config.demasker}"
        lines.append(f"| {label} | **this run** {paper_cells(ours)}")
        lines += [f"| | paper: {where} | " + " | ".join(fmt(v) for v in values) + " |"
                  for where, *values in rows]
    return lines


def ablation_table(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Table 7 layout: the same certifier with and without demasking (solid fill)."""
    lines: list[str] = []
    for group in grouped(entries, "demasker").values():
        if not any(e["parameters"]["demasker"] == "solid" for e in group):
            continue
        if not lines:
            lines = ["| mode | patch | mask | demasking " + PAPER_HEADER,
                     "|---|---|---|---" + "|---:" * 7 + "|"]
        for entry in group:
            p = entry["parameters"]
            demasking = "✗ (solid fill)" if p["demasker"] == "solid" else f"✓ ({p['demasker']})"
            lines.append(f"| {p['mode']} | {patch_label(_patch(p['patch']))} | {p['scheme']} | {demasking} "
                         f"{paper_cells(entry)}")
    return lines


def drs_table(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Table 10 layout: Demasked Smoothing (column) against the DRS baselines at the same patch."""
    drs = [e for e in entries if e["method"] != "Demasked Smoothing"]
    if not drs:
        return []
    lines = ["| method | patch | demasker " + PAPER_HEADER, "|---|---|---" + "|---:" * 7 + "|"]
    patches = {json.dumps(e["parameters"]["patch"]) for e in drs}
    ours = [e for e in entries if e["method"] == "Demasked Smoothing"
            and e["parameters"]["mode"] == "recovery" and e["parameters"]["scheme"] == "column"
            and json.dumps(e["parameters"]["patch"]) in patches]
    for entry in [*ours, *drs]:
        p = entry["parameters"]
        lines.append(f"| {entry['method']} | {patch_label(_patch(p['patch']))} | {p['demasker']} "
                     f"{paper_cells(entry)}")
    return lines


def sweep_groups(entries: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Groups of entries that differ only in the patch size, sorted by patch size (Figure 5)."""
    return [sorted(group, key=lambda e: _patch_key(e["parameters"]["patch"]))
            for group in grouped(entries, "patch").values()]


def sweep_figure(entries: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Figure 5: mR, cmR, big mR/cmR and %C against the patch size, one panel per mode."""
    groups = [g for g in sweep_groups(entries)
              if all(not isinstance(e["parameters"]["patch"], list) for e in g)]
    if not groups:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
    for axis, group in zip(axes[0], groups, strict=True):
        x = [100 * e["parameters"]["patch"] for e in group]
        for key, label in (("mR", "mR"), ("cmR", "cmR"), ("big_mR", "big mR"), ("big_cmR", "big cmR"),
                           ("pct_certified", "%C")):
            y = [np.nan if e[key] is None else e[key] for e in group]
            axis.plot(x, y, marker="o", label=label)
        p = group[0]["parameters"]
        axis.set_title(f"{p['mode']} {p['scheme']} ({p['demasker']})")
        axis.set_xlabel("patch size (% of image area)")
        axis.set_ylabel("%")
        axis.set_ylim(0, 100)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def per_class_table(entries: Sequence[Entry], limit: int = 8) -> list[str]:
    """Recall / certified recall per class for the first ``limit`` configurations."""
    shown = [e for e in entries if e["per_class"]][:limit]
    if not shown:
        return []
    lines = ["| class | % of frames it is in | " + " | ".join(e["id"] for e in shown) + " |",
             "|---|---:" + "|---:" * len(shown) + "|"]
    for index, row in enumerate(shown[0]["per_class"]):
        cells = [f"{fmt(r['recall'], 1)} / {fmt(r['certified_recall'], 1)}"
                 for r in (e["per_class"][index] for e in shown)]
        lines.append(f"| {row['name']} | {fmt(row['mean_share'], 1)} | " + " | ".join(cells) + " |")
    return lines


def per_class_figure(entry: Mapping[str, Any], path: Path) -> Path | None:
    """Per-class recall and certified recall bars for one configuration."""
    rows = [r for r in entry["per_class"] if r["pixels"] > 0]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = np.arange(len(rows))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 3.6))
    axis.bar(positions - 0.2, [r["recall"] or 0 for r in rows], 0.4, label="recall")
    axis.bar(positions + 0.2, [r["certified_recall"] or 0 for r in rows], 0.4, label="certified recall")
    axis.set_xticks(positions, [r["name"] for r in rows], rotation=45, ha="right")
    axis.set_ylim(0, 100)
    axis.set_ylabel("%")
    axis.set_title(entry["id"], fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
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


class ExampleWriter:
    """Sink writing example PNGs (input | ground truth | output | certification overlay).

    Args:
        out_dir: run folder; images go to ``out_dir/examples/<frame>__<config>.png``.
        indices: frame indices to draw.
        class_info: label colours.
    """

    def __init__(self, out_dir: Path, indices: Iterable[int], class_info: ClassInfo) -> None:
        self.folder = out_dir / "examples"
        self.indices = set(indices)
        self.class_info = class_info

    def wants_arrays(self, index: int) -> bool:
        """Only the chosen example frames."""
        return index in self.indices

    def write(self, outcome: FrameOutcome) -> None:
        """Save one PNG per configuration for an example frame."""
        if outcome.index not in self.indices or outcome.frame is None:
            return
        import cv2

        self.folder.mkdir(parents=True, exist_ok=True)
        frame, colors = outcome.frame, self.class_info.colors
        truth = colorize(frame.labels, colors) if frame.labels is not None else np.zeros_like(frame.image)
        for config_id, result in outcome.results.items():
            if result.labels is None or result.certified is None:
                continue
            tiles = [frame.image, truth, colorize(result.labels, colors),
                     overlay(frame.image, result.labels, result.certified, colors)]
            panel = np.concatenate([captioned(tile, caption) for tile, caption in zip(
                tiles, ("input", "ground truth", "output", "certified (hatched: not)"), strict=True)], axis=1)
            stem = Path(outcome.name).stem.replace("/", "_").replace("@", "_")
            cv2.imwrite(str(self.folder / f"{stem}__{config_id}.png"), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Nothing buffered."""


def captioned(tile: np.ndarray, caption: str) -> np.ndarray:
    """A copy of ``tile`` with ``caption`` in its top-left corner (white on a dark box)."""
    import cv2

    out = np.ascontiguousarray(tile.copy())
    scale = max(0.3, tile.shape[0] / 720)
    (width, height), _ = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (width + 6, height + 8), (0, 0, 0), -1)
    cv2.putText(out, caption, (3, height + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return out


def example_indices(selected: Sequence[int], count: int) -> list[int]:
    """``count`` frame indices spread evenly over the selection (first, middle, last, ...)."""
    if count <= 0 or not selected:
        return []
    if count == 1:
        return [selected[0]]
    picks = np.linspace(0, len(selected) - 1, num=min(count, len(selected))).round().astype(int)
    return sorted({selected[i] for i in picks})
