"""What ``demasked-demo`` says at the end: input and why, certified fraction, bag, how to look, what next.

Kept apart from the demo's ROS loop so that the wording can be tested without ROS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RVIZ_CONFIG = Path(__file__).resolve().parents[3] / "config" / "demasked_ros.rviz"
"""The shipped RViz layout in a source checkout (installed: ``share/demasked_ros/config``)."""


@dataclass(frozen=True)
class DemoInput:
    """The frames the demo fed, in words: ``what`` (e.g. "CamVid 15 Hz clip ...") and ``why``."""

    what: str
    why: str
    camvid: bool


def rviz_config_path() -> str:
    """The RViz config to pass to ``rviz2 -d``: the checkout's file, else the installed package's."""
    if RVIZ_CONFIG.is_file():
        return str(RVIZ_CONFIG)
    return "$(ros2 pkg prefix demasked_ros)/share/demasked_ros/config/demasked_ros.rviz"


def summary_lines(source: DemoInput, fractions: Sequence[float], setting: str, bag: Path,
                  counts: str, sheet: Path | None) -> list[str]:
    """The closing summary (one string per line; the caller prints them)."""
    lines = ["", "demasked-demo: summary", f"  input:          {source.what}",
             f"  why:            {source.why}"]
    if fractions:
        mean = 100 * sum(fractions) / len(fractions)
        lines.append(f"  certified:      {mean:.1f} % of pixels on average over {len(fractions)} frames "
                     f"(min {100 * min(fractions):.1f} %, max {100 * max(fractions):.1f} %; {setting})")
    else:
        lines.append("  certified:      no frame was certified (see the errors above)")
    lines.append(f"  bag:            {bag} ({counts})")
    if sheet is not None:
        lines.append(f"  contact sheet:  {sheet} (input | overlay | certification map)")
    lines += [
        "  look at it:     Foxglove: open the .mcap file in the bag folder (Open local file) and add Image",
        "                  panels for /image, /demasked_ros/overlay and /demasked_ros/certification;",
        f"                  RViz: ros2 bag play {bag} --loop --remap /image:=/camera/image_raw",
        f"                        rviz2 -d {rviz_config_path()}",
    ]
    if not source.camvid:
        lines += [
            "  real frames:    these are procedural street scenes; for real driving frames run",
            "                    .venv/bin/demasked-fetch-data camvid     (a download of about 180 MB, once)",
            "                  then run the demo again: it finds the data by itself.",
        ]
    else:
        lines.append("  real frames:    this run used real driving frames (CamVid)")
    lines += [
        "  your own data:  a camera: .venv/bin/demasked-node --ros-args -r image:=/camera/image_raw",
        "                  a bag:    .venv/bin/demasked-eval BAG --out runs/eval --mode recovery "
        "--scheme column",
    ]
    return lines
