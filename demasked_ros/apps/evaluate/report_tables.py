"""Markdown tables of report.md, laid out like the paper's Tables 1, 7 and 10, from summary.json entries.

Split from :mod:`demasked_ros.apps.evaluate.report`: every function here is pure (entries in, lines of
Markdown out), so the tables can be tested without writing files or drawing figures.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from demasked_ros.apps.evaluate.config import EvalConfig, paper_rows, patch_label


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

