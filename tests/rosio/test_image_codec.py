"""Image codec: every accepted encoding round-trips, every malformed field is rejected."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from demasked_ros.rosio.image_codec import (
    ImageCodecError,
    decode_compressed,
    decode_labels,
    decode_raw,
    encode_mono8,
    encode_mono16,
    encode_rgb8,
)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _padded(pixels: np.ndarray, pad: int) -> tuple[int, bytes]:
    """Row-major bytes with ``pad`` junk bytes after every row; returns (step, data)."""
    rows = pixels.reshape(pixels.shape[0], -1)
    junk = np.full((rows.shape[0], pad), 77, np.uint8)
    full = np.concatenate([rows, junk], axis=1)
    return full.shape[1], full.tobytes()


@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_decode_to_rgb(rgb: np.ndarray, pad: int) -> None:
    alpha = np.full((*rgb.shape[:2], 1), 9, np.uint8)
    sources = {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([rgb[:, :, ::-1], alpha], axis=2),
    }
    for encoding, pixels in sources.items():
        step, data = _padded(np.ascontiguousarray(pixels), pad)
        decoded = decode_raw(encoding, 5, 7, step, data)
        assert decoded.dtype == np.uint8 and decoded.shape == (5, 7, 3)
        np.testing.assert_array_equal(decoded, rgb, err_msg=encoding)


def test_mono8_is_replicated_and_array_input_accepted(rgb: np.ndarray) -> None:
    gray = rgb[:, :, 0].copy()
    step, data = _padded(gray, 2)
    decoded = decode_raw("mono8", 5, 7, step, array.array("B", data))
    np.testing.assert_array_equal(decoded, np.repeat(gray[:, :, None], 3, axis=2))


def test_decoded_image_does_not_alias_the_buffer(rgb: np.ndarray) -> None:
    buffer = bytearray(rgb.tobytes())
    decoded = decode_raw("rgb8", 5, 7, 21, buffer)
    buffer[0] = (buffer[0] + 1) % 256
    assert decoded[0, 0, 0] == rgb[0, 0, 0]


@pytest.mark.parametrize(
    ("encoding", "height", "width", "step", "size", "message"),
    [
        ("yuv422", 5, 7, 21, 105, "unsupported image encoding"),
        ("rgb8", 0, 7, 21, 0, "zero"),
        ("rgb8", 5, 0, 0, 0, "zero"),
        ("rgb8", 5, 7, 20, 105, "step 20 is smaller"),
        ("rgb8", 5, 7, 21, 104, "fewer than height"),
        ("rgb8", 5, 7, 21, 0, "fewer than height"),
        ("rgb8", -1, 7, 21, 105, "zero or negative"),
        ("rgb8", 5.0, 7, 21, 105, "must be an integer"),
    ],
)
def test_malformed_raw_images_are_rejected(encoding, height, width, step, size, message) -> None:
    with pytest.raises(ImageCodecError, match=message):
        decode_raw(encoding, height, width, step, bytes(size))


def test_maximum_size_is_enforced(rgb: np.ndarray) -> None:
    assert decode_raw("rgb8", 5, 7, 21, rgb.tobytes(), max_pixels=35).shape == (5, 7, 3)
    with pytest.raises(ImageCodecError, match="more than the maximum 34"):
        decode_raw("rgb8", 5, 7, 21, rgb.tobytes(), max_pixels=34)


def test_codec_error_is_a_value_error() -> None:
    assert issubclass(ImageCodecError, ValueError)


@pytest.mark.parametrize("fmt", ["png", "rgb8; png compressed bgr8"])
def test_png_round_trip_is_exact(rgb: np.ndarray, fmt: str) -> None:
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    np.testing.assert_array_equal(decode_compressed(fmt, png.tobytes()), rgb)


def test_jpeg_decodes_close_to_source() -> None:
    smooth = np.zeros((32, 48, 3), np.uint8)
    smooth[:, :, 0] = 200
    smooth[:, :, 2] = 40
    ok, jpeg = cv2.imencode(".jpg", smooth[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    decoded = decode_compressed("jpeg", jpeg.tobytes())
    assert decoded.shape == (32, 48, 3)
    assert np.abs(decoded.astype(int) - smooth).max() <= 4


def test_compressed_max_size_checked_from_header() -> None:
    big = np.zeros((40, 50, 3), np.uint8)
    for ext in (".png", ".jpg"):
        ok, data = cv2.imencode(ext, big)
        assert ok
        with pytest.raises(ImageCodecError, match="40x50"):
            decode_compressed(ext[1:], data.tobytes(), max_pixels=40 * 50 - 1)
        assert decode_compressed(ext[1:], data.tobytes(), max_pixels=40 * 50).shape == (40, 50, 3)


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [("tiff", b"abc", "unsupported compressed format"), ("png", b"", "no data"),
     ("jpeg", b"\xff\xd8garbage", "rejected before decoding"),
     ("jpeg", b"BM" + bytes(60), "not a JPEG or PNG")],
)
def test_bad_compressed_images_are_rejected(fmt: str, data: bytes, message: str) -> None:
    with pytest.raises(ImageCodecError, match=message):
        decode_compressed(fmt, data)


def test_label_round_trips() -> None:
    labels8 = np.arange(35, dtype=np.uint8).reshape(5, 7)
    encoding, step, data = encode_mono8(labels8)
    assert (encoding, step) == ("mono8", 7)
    np.testing.assert_array_equal(decode_labels(encoding, 5, 7, step, data), labels8)

    labels16 = (np.arange(35, dtype=np.uint16) * 1000).reshape(5, 7)
    encoding, step, data = encode_mono16(labels16)
    assert (encoding, step) == ("mono16", 14)
    decoded = decode_labels(encoding, 5, 7, step, data)
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, labels16)
    big_endian = labels16.astype(">u2").tobytes()
    np.testing.assert_array_equal(decode_labels("mono16", 5, 7, 14, big_endian, is_bigendian=True), labels16)


def test_rgb8_encoding_round_trips(rgb: np.ndarray) -> None:
    encoding, step, data = encode_rgb8(rgb)
    assert (encoding, step, len(data)) == ("rgb8", 21, 105)
    np.testing.assert_array_equal(decode_raw(encoding, 5, 7, step, data), rgb)


def test_encoders_reject_bad_arrays() -> None:
    with pytest.raises(ImageCodecError):
        encode_mono8(np.array([[256]]))
    with pytest.raises(ImageCodecError):
        encode_mono16(np.array([[-1]]))
    with pytest.raises(ImageCodecError):
        encode_rgb8(np.zeros((2, 2), np.uint8))
    with pytest.raises(ImageCodecError, match="unsupported label encoding"):
        decode_labels("rgb8", 1, 1, 3, b"abc")
