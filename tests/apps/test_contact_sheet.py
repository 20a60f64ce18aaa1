"""Contact sheet of a recorded run: frame picking, layout, stamp matching in a bag (written here, no ROS)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from demasked_ros.apps.contact_sheet import (
    SheetRow,
    main,
    pick_indices,
    render_contact_sheet,
    rows_from_bag,
    sheet_path,
    write_contact_sheet,
)
from demasked_ros.rosio.bagwriter import BagWriter

STATUS = "demasked_ros_interfaces/msg/CertificationStatus"


def test_pick_indices_spreads_evenly_and_never_repeats():
    assert pick_indices(20, 4) == [0, 6, 13, 19]
    assert pick_indices(3, 5) == [0, 1, 2]
    assert pick_indices(7, 1) == [3] and pick_indices(0, 4) == [] and pick_indices(5, 0) == []
    for count in range(1, 30):
        for rows in range(1, 8):
            picked = pick_indices(count, rows)
            assert picked == sorted(set(picked)) and len(picked) == min(count, rows)
            assert all(0 <= i < count for i in picked)


def _frame(seed: int, h: int = 36, w: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_render_places_input_overlay_and_certificate_side_by_side():
    image, overlay = np.full((36, 48, 3), 200, np.uint8), np.full((36, 48, 3), 50, np.uint8)
    cert = np.zeros((36, 48), np.uint8)
    cert[:, 24:] = 255
    sheet = render_contact_sheet([SheetRow("frame 1", image, overlay, cert)], "title", thumb_width=96)
    assert sheet.shape == (2 * 22 + 22 + 72 + 6, 3 * 96 + 4 * 6, 3)
    top = 3 * 22
    assert (sheet[top:top + 72, 6:6 + 96] == 200).all()  # input column
    assert (sheet[top:top + 72, 108:108 + 96] == 50).all()  # overlay column
    certificate = sheet[top:top + 72, 210:210 + 96]
    assert (certificate[:, :47] == 0).all() and (certificate[:, 49:] == 255).all()
    with pytest.raises(ValueError, match="at least one frame"):
        render_contact_sheet([], "title")


def test_write_posterises_to_the_asked_bits(tmp_path):
    row = SheetRow("frame", _frame(0), _frame(1), np.full((36, 48), 255, np.uint8))
    path = write_contact_sheet(tmp_path / "s.png", [row], "t", thumb_width=48, bits=5)
    written = cv2.imread(str(path))
    assert written is not None and set(np.unique(written & 7)) == {4}  # low 3 bits: the step's centre
    with pytest.raises(ValueError, match="bits"):
        write_contact_sheet(tmp_path / "t.png", [row], "t", bits=0)


def _run_bag(path, fractions, errors=()):
    """A bag as the demo records it: /image, overlay, certification and alert per frame, same stamps."""
    with BagWriter(path) as bag:
        for index, fraction in enumerate(fractions):
            stamp = 1_000_000_000 + index * 66_666_667
            bag.write_image("/image", stamp, _frame(index))
            bag.write_image("/demasked_ros/overlay", stamp, _frame(100 + index))
            certificate = np.full((36, 48), 255 * (index % 2), np.uint8)
            bag.write_labels("/demasked_ros/certification", stamp, certificate)
            bag.write_fields("/demasked_ros/alert", STATUS, stamp, certified_fraction=fraction,
                             error_code=2 if index in errors else 0)


def test_rows_from_bag_match_outputs_to_their_input_by_stamp(tmp_path):
    bag = tmp_path / "run"
    _run_bag(bag, [0.1, 0.2, 0.3, 0.4, 0.5], errors={0})
    rows = rows_from_bag(bag, rows=2)
    assert [r.caption for r in rows] == ["frame 2 of 5: 20.0 % certified", "frame 5 of 5: 50.0 % certified"]
    assert np.array_equal(rows[0].image, _frame(1)) and np.array_equal(rows[0].overlay, _frame(101))
    assert (rows[0].certification == 255).all() and (rows[1].certification == 0).all()
    assert main([str(bag), "--rows", "3", "--width", "64"]) == 0
    assert cv2.imread(str(sheet_path(bag))) is not None and sheet_path(bag).parent == tmp_path


def test_a_bag_without_certified_frames_or_unreadable_is_exit_2(tmp_path, capsys):
    bag = tmp_path / "run"
    _run_bag(bag, [0.5], errors={0})
    assert rows_from_bag(bag) == []
    assert main([str(bag)]) == 2 and "no frame" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2 and "cannot read" in capsys.readouterr().err
