"""libjpeg warnings are captured from stderr instead of reaching the console."""

import os

import cv2
import numpy as np

from demasked_ros.rosio.decoder_log import capture_stderr


def test_libjpeg_warning_is_captured_and_stderr_restored(capfd):
    image = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 2:len(corrupt) // 2 + 2] = b"\xff\xd3"  # a stray restart marker mid-scan
    png = cv2.imencode(".png", image)[1].tobytes()
    bad_crc = png[:-12] + b"\0\0\0\0IEND\0\0\0\0"
    with capture_stderr() as lines:
        assert cv2.imdecode(np.frombuffer(bytes(corrupt), np.uint8), cv2.IMREAD_COLOR) is not None
        assert cv2.imdecode(np.frombuffer(bad_crc, np.uint8), cv2.IMREAD_COLOR) is not None
    assert any("Corrupt JPEG data" in line for line in lines), lines
    assert any("libpng warning" in line for line in lines), lines
    err = capfd.readouterr().err
    assert "Corrupt JPEG" not in err and "libpng" not in err
    os.write(2, b"after\n")
    assert "after" in capfd.readouterr().err
