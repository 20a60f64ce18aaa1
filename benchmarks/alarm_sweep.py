"""Choose the patch alarm's score parameters on a *tuning* set of attacked frames, then report them
on a separate test set (so the choice is not made on the figures it is judged by).

Reads ``demasked-attack --save-branches`` run folders (as :mod:`alarm_study` does), scores every
clean and attacked frame for each parameter combination of a small grid, and prints per mode the
ROC AUC (effective placements vs clean frames) on the tuning runs and on the test runs; the
combination with the best tuning AUC (ties: the default) is marked ``chosen``.

    python benchmarks/alarm_sweep.py --tune runs/eval/tune-pgd30-detection --test runs/eval/pgd30-detection
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alarm_study import study

from demasked_ros.core.alarm import AlarmParams, roc_auc

TOLERANCES = (0, 1, 2, 3)
REACHES = (0.5, 1.0, 2.0)
OPEN_RADII = (1, 2, 3)


def auc(folders: list[Path], mode: str, params: AlarmParams) -> float | None:
    """Pooled AUC of effective placements against clean frames over ``folders``."""
    clean: list[float] = []
    effective: list[float] = []
    for folder in folders:
        result = study(folder, mode, params, None)
        clean += result["_clean"]
        effective += result["_effective"]
    return roc_auc(clean, effective) if clean and effective else None


def sweep(tune: list[Path], test: list[Path]) -> list[dict[str, Any]]:
    """One row per parameter combination, best tuning AUC first."""
    mode = "detection" if "detection" in tune[0].name else "recovery"
    rows: list[dict[str, Any]] = []
    for tolerance, reach, radius in itertools.product(TOLERANCES, REACHES, OPEN_RADII):
        params = AlarmParams(open_radius=radius, tolerance=tolerance, reach=reach)
        rows.append({"mode": mode, "tolerance": tolerance, "reach": reach, "open_radius": radius,
                     "auc_tune": auc(tune, mode, params), "auc_test": auc(test, mode, params),
                     "default": params == AlarmParams()})
    rows.sort(key=lambda r: (-(r["auc_tune"] or 0.0), not r["default"]))
    rows[0]["chosen"] = True
    return rows


def main() -> None:
    """Print the grid as JSON lines, the chosen combination first."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", nargs="+", type=Path, required=True)
    parser.add_argument("--test", nargs="+", type=Path, required=True)
    args = parser.parse_args()
    for row in sweep(args.tune, args.test):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
