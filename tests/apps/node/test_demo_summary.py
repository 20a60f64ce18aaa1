"""The demo's closing summary says which input and why, the certified fraction, the bag and what next."""

from __future__ import annotations

from pathlib import Path

from demasked_ros.apps.node.demo_summary import RVIZ_CONFIG, DemoInput, summary_lines


def test_procedural_summary_points_to_real_frames():
    why = "CamVid not found ($DEMASKED_CAMVID unset)"
    source = DemoInput("procedural street scenes, 3 frames", why, False)
    text = "\n".join(summary_lines(source, [0.4, 0.5, 0.6], "recovery, column masks", Path("/b/run"),
                                   "/image 3", Path("/b/run_contact_sheet.png")))
    assert "input:          procedural street scenes, 3 frames" in text
    assert "why:            CamVid not found ($DEMASKED_CAMVID unset)" in text
    assert ("50.0 % of pixels on average over 3 frames (min 40.0 %, max 60.0 %; recovery, column masks)"
            in text)
    assert "bag:            /b/run (/image 3)" in text and "/b/run_contact_sheet.png" in text
    assert "ros2 bag play /b/run --loop --remap /image:=/camera/image_raw" in text
    assert f"rviz2 -d {RVIZ_CONFIG}" in text and RVIZ_CONFIG.is_file()
    assert "Foxglove" in text and "demasked-fetch-data camvid" in text


def test_camvid_summary_and_a_run_without_certificates():
    source = DemoInput("CamVid 15 Hz clip", "CamVid found in the default download location", True)
    text = "\n".join(summary_lines(source, [], "recovery", Path("/b"), "", None))
    assert "no frame was certified" in text and "demasked-fetch-data" not in text
    assert "contact sheet" not in text and "real driving frames (CamVid)" in text
