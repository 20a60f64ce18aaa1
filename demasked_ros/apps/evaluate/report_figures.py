"""Figures and example images of a demasked-eval run (patch-size sweep, per-class bars, example panels).

Split from :mod:`demasked_ros.apps.evaluate.report`: everything that draws pixels (matplotlib plots,
cv2 panels) lives here, imported lazily so that summaries and tables need neither library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demasked_ros.apps.evaluate.report_tables import sweep_groups
from demasked_ros.apps.evaluate.runner import FrameOutcome
from demasked_ros.core.classes import ClassInfo
from demasked_ros.core.visualize import colorize, overlay


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
