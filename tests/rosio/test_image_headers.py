"""The JPEG/PNG header parser: agrees with the decoder on real files, walks any padding, never decodes."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from demasked_ros.rosio.image_headers import (
    MAX_JPEG_SEGMENTS,
    ImageHeader,
    ImageHeaderError,
    image_format,
    read_image_header,
)


def picture(height=37, width=53, channels=3):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(height, width, channels)[: 2 if channels == 1 else 3], dtype=np.uint8)


def jpeg(height=37, width=53, progressive=False, grey=False):
    image = picture(height, width, 1 if grey else 3)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return data.tobytes()


def png(height=37, width=53, channels=3):
    ok, data = cv2.imencode(".png", picture(height, width, channels))
    assert ok
    return data.tobytes()


def segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def with_segments_after_soi(data, *segments):
    return data[:2] + b"".join(segments) + data[2:]


def sof_offset(data):
    """Offset of the SOF marker's length field in a JPEG written by OpenCV."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        index = data.find(marker)
        if index > 0:
            return index + 2
    raise AssertionError("no SOF")


def with_size(data, height, width):
    at = sof_offset(data)
    return data[:at + 3] + struct.pack(">HH", height, width) + data[at + 7:]


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("grey", [False, True])
def test_jpeg_header_matches_the_decoder(progressive, grey):
    data = jpeg(37, 53, progressive, grey)
    header = read_image_header(data)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert header == ImageHeader(53, 37, 1 if grey else 3)
    assert decoded.shape[:2] == (header.height, header.width)
    assert data[sof_offset(data) - 1] == (0xC2 if progressive else 0xC0)


@pytest.mark.parametrize("progressive", [False, True])
def test_bomb_behind_70_kb_of_comment_and_app_segments_is_read_without_decoding(progressive):
    padding = [segment(0xFE, b"c" * 65000), segment(0xE1, b"Exif\0\0" + b"x" * 5000),
               segment(0xED, b"\xff" * 3000)]  # 0xff bytes inside a segment are payload, not markers
    bomb = with_size(with_segments_after_soi(jpeg(progressive=progressive), *padding), 20000, 20000)
    assert len(bomb) > 70_000
    assert read_image_header(bomb) == ImageHeader(20000, 20000, 3)
    # the old fixed-prefix parser gave up beyond 64 KiB; this one does not care how far the SOF is
    far = with_segments_after_soi(jpeg(), *[segment(0xFE, b"z" * 60000) for _ in range(5)])
    assert read_image_header(far) == ImageHeader(53, 37, 3)


def test_fill_bytes_and_standalone_markers_are_skipped_like_libjpeg():
    data = with_segments_after_soi(jpeg(), b"\xff" * 1000 + segment(0xFE, b"hi"), b"\xff\xff\xff")
    assert read_image_header(data) == ImageHeader(53, 37, 3)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[:2] == (37, 53)


def test_png_header_matches_the_decoder_and_huge_ihdr_is_reported():
    for channels in (1, 3, 4):
        data = png(29, 71, channels)
        assert read_image_header(data) == ImageHeader(71, 29, channels)
    body = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    huge = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + body + \
        struct.pack(">I", zlib.crc32(b"IHDR" + body)) + png()[33:]
    assert read_image_header(huge) == ImageHeader(100000, 100000, 3)


def test_png_with_a_bad_crc_or_invalid_ihdr_is_refused():
    data = bytearray(png())
    data[20] ^= 0xFF  # height byte: CRC no longer matches
    with pytest.raises(ImageHeaderError, match="CRC"):
        read_image_header(bytes(data))
    body = struct.pack(">IIBBBBB", 10, 10, 7, 2, 0, 0, 0)  # bit depth 7 does not exist
    bad = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + body + \
        struct.pack(">I", zlib.crc32(b"IHDR" + body))
    with pytest.raises(ImageHeaderError, match="bit depth"):
        read_image_header(bad)


@pytest.mark.parametrize("maker", [jpeg, png, lambda: jpeg(progressive=True)])
def test_every_truncation_of_the_header_is_an_error(maker):
    data = maker()
    end = sof_offset(data) + 2 + 6 + 9 if data.startswith(b"\xff\xd8") else 33
    for cut in range(0, end - 1):
        with pytest.raises(ImageHeaderError):
            read_image_header(data[:cut])


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 100, b"GIF89a" + b"\0" * 50, b"BM" + b"\0" * 60,
    b"\xff\xd8\xff\xda\x00\x02" + b"\0" * 20,          # scan before frame header
    b"\xff\xd8\xff\xd9",                                 # EOI before frame header
    b"\xff\xd8\x12\x34",                                 # garbage where a marker belongs
    b"\xff\xd8\xff\xfe\x00\x01",                         # length below 2
    b"\xff\xd8\xff\xc0\x00\x0b\x08\x00\x00\x01\x00\x01\x01\x11\x00",  # height 0 (DNL)
    b"\xff\xd8" + b"\xff\x01" * (MAX_JPEG_SEGMENTS + 1),  # segment flood
])
def test_garbage_and_unsupported_input_is_a_clear_error(data):
    with pytest.raises(ImageHeaderError):
        read_image_header(data)


def test_random_mutations_never_raise_anything_else():
    rng = np.random.default_rng(5)
    sources = [jpeg(), jpeg(progressive=True), png()]
    for trial in range(600):
        data = bytearray(sources[trial % 3])
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(0, min(len(data), 700)))] = int(rng.integers(0, 256))
        try:
            header = read_image_header(bytes(data))
        except ImageHeaderError:
            continue
        assert header.width > 0 and header.height > 0 and header.channels > 0


def test_accepts_ros_buffer_types_and_sniffs_the_format():
    data = jpeg()
    for buffer in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        assert read_image_header(buffer) == ImageHeader(53, 37, 3)
    import array
    assert read_image_header(array.array("B", png())) == ImageHeader(53, 37, 3)
    assert image_format(data) == "jpeg" and image_format(png()) == "png"
    with pytest.raises(ImageHeaderError):
        read_image_header(np.zeros(10, np.float32))
