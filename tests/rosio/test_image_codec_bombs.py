"""Decompression bombs and odd containers are rejected from the header, before any decode."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from demasked_ros.rosio import image_codec
from demasked_ros.rosio.image_codec import ImageCodecError, decode_compressed


def jpeg(progressive=False):
    image = np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1].tobytes()


def segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_bomb(progressive=False):
    """70 KB of COM/APP1 segments after SOI (beyond the old 64 KiB look-ahead), SOF 20000x20000."""
    data = jpeg(progressive)
    data = data[:2] + segment(0xFE, b"c" * 65000) + segment(0xE1, b"x" * 5000) + data[2:]
    at = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2")) + 2
    return data[:at + 3] + struct.pack(">HH", 20000, 20000) + data[at + 7:]


def png_bomb():
    image = np.zeros((8, 8, 3), np.uint8)
    data = cv2.imencode(".png", image)[1].tobytes()
    body = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    return data[:8] + struct.pack(">I", 13) + b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body)) \
        + data[33:]


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the decoder ran")

    monkeypatch.setattr(cv2, "imdecode", refuse)


@pytest.mark.parametrize("bomb", [jpeg_bomb(), jpeg_bomb(progressive=True), png_bomb()],
                         ids=["jpeg-padded", "progressive-padded", "png-ihdr"])
def test_bombs_are_rejected_without_decoding(bomb, no_decoding):
    assert len(bomb) < 200_000
    with pytest.raises(ImageCodecError, match="rejected before decoding"):
        decode_compressed("jpeg", bomb, max_pixels=3840 * 2160)


def test_other_containers_are_not_handed_to_the_decoder(no_decoding):
    bmp = bytes(cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1])
    with pytest.raises(ImageCodecError, match="not a JPEG or PNG"):
        decode_compressed("jpeg", bmp, max_pixels=100)


def test_padded_but_honest_jpeg_decodes_and_decoder_warnings_go_to_the_callback(capfd):
    data = jpeg()
    padded = data[:2] + segment(0xFE, b"c" * 65000) + segment(0xE1, b"x" * 5000) + data[2:]
    assert decode_compressed("jpeg", padded, max_pixels=37 * 53).shape == (37, 53, 3)
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 2:len(corrupt) // 2 + 2] = b"\xff\xd3"
    warnings = []
    assert decode_compressed("jpeg", bytes(corrupt), on_warning=warnings.append).shape == (37, 53, 3)
    assert any("Corrupt JPEG data" in line for line in warnings)
    assert "Corrupt JPEG" not in capfd.readouterr().err


def test_a_decoded_size_that_contradicts_the_header_is_refused(monkeypatch):
    from demasked_ros.rosio.image_headers import ImageHeader

    monkeypatch.setattr(image_codec, "read_image_header", lambda data: ImageHeader(10, 10, 3))
    with pytest.raises(ImageCodecError, match="differs from its header"):
        decode_compressed("jpeg", jpeg())
