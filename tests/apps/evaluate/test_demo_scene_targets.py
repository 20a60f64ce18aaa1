"""The offline demo's promise (issue 14): with the packaged models, the procedural street scenes that
``scripts/demo.sh`` shows on a machine without CamVid are segmented and certified about as well as
real driving. Measured with segmenter version 3: clean mIoU 63.0, recovery column 0.5 % %C 75.8
(docs/RESULTS.md); a retrained default model that falls below the targets fails here."""

from __future__ import annotations

import json

from demasked_ros.apps.evaluate import cli


def test_default_models_meet_the_demo_targets_on_procedural_streets(tmp_path):
    out = tmp_path / "eval"
    assert cli.main(["procedural:20", "--mode", "recovery", "detection", "--scheme", "column",
                     "--out", str(out), "--quiet"]) == 0
    configurations = json.loads((out / "summary.json").read_text())["configurations"]
    recovery = next(c for c in configurations.values() if c["parameters"]["mode"] == "recovery")
    detection = next(c for c in configurations.values() if c["parameters"]["mode"] == "detection")
    assert recovery["frames_evaluated"] == detection["frames_evaluated"] == 20
    assert detection["mIoU"] >= 60.0, f"clean mIoU {detection['mIoU']:.2f} (f(x) is the detection output)"
    assert recovery["pct_certified"] >= 60.0, f"recovery %C {recovery['pct_certified']:.2f}"
