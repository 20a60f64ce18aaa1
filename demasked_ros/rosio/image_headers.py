"""Read a JPEG or PNG header (width, height, channels) without decoding a single pixel.

Why: a decompression bomb is a small file whose header declares a huge image (a 131 KB JPEG with
70 KB of comment segments ahead of a 20000x20000 frame header). The size must be known, and the
message rejected, *before* the decoder allocates anything. Reading a fixed prefix is not enough:
segments ahead of the frame header can be arbitrarily long. This parser walks the JPEG segment
chain by its length fields exactly as libjpeg does (fill bytes, APPn/COM/DQT/DHT/... of any size,
baseline, extended, progressive, lossless and arithmetic SOF markers) up to the first SOF, and
reads a PNG's IHDR (which must be the first chunk; its CRC is checked). Anything else (another
format, a truncated header, a segment chain that does not parse, a height defined later by DNL)
is an error: only what the walk can vouch for is decoded.

Pure Python, no numpy/OpenCV: cost is proportional to the number of segments ahead of the frame
header (bounded by :data:`MAX_JPEG_SEGMENTS`), never to the pixel count.
"""

from __future__ import annotations

import re
import zlib
from typing import Any, NamedTuple

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
#: Start-of-frame markers (SOF0-3, 5-7, 9-11, 13-15); C4 (DHT), C8 (JPG) and CC (DAC) are not.
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
#: Markers without a length field: TEM, RST0-7 (SOI/EOI are handled on their own).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
#: Most segments accepted ahead of the frame header (real files have a few dozen at most).
MAX_JPEG_SEGMENTS = 4096
#: Channels per PNG colour type (palette images decode to RGB).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_FILL = re.compile(rb"\xff*")


class ImageHeaderError(ValueError):
    """The data is not a JPEG/PNG whose header can be read; the text says why."""


class ImageHeader(NamedTuple):
    """Size declared by an image header."""

    width: int
    height: int
    channels: int


def _bytes(data: Any) -> bytes:
    """The payload as bytes (bytes, bytearray, memoryview, array.array('B'), uint8 ndarray)."""
    if isinstance(data, bytes):
        return data
    try:
        view = memoryview(data)
    except TypeError as error:
        raise ImageHeaderError(f"image data is not a byte buffer ({type(data).__name__})") from error
    if view.itemsize != 1:
        raise ImageHeaderError(f"image data must be bytes, got items of {view.itemsize} bytes")
    return view.cast("B").tobytes() if view.ndim != 1 or view.format != "B" else bytes(view)


def image_format(data: Any) -> str:
    """``"jpeg"`` or ``"png"`` from the signature (the message's format field is not trusted)."""
    head = _bytes(data)[:8]
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SOI):
        return "jpeg"
    raise ImageHeaderError(f"not a JPEG or PNG file (starts with {head[:4].hex() or 'nothing'})")


def read_image_header(data: Any) -> ImageHeader:
    """(width, height, channels) from a JPEG SOF or PNG IHDR header, without decoding.

    Raises:
        ImageHeaderError: not JPEG/PNG, truncated or malformed header, zero size.
    """
    raw = _bytes(data)
    kind = image_format(raw)
    return _png_header(raw) if kind == "png" else _jpeg_header(raw)


def _png_header(raw: bytes) -> ImageHeader:
    chunk = raw[8:8 + 25]
    if len(chunk) < 25:
        raise ImageHeaderError(f"truncated PNG: {len(raw)} bytes, the IHDR chunk needs 33")
    length, kind = int.from_bytes(chunk[:4], "big"), chunk[4:8]
    if kind != b"IHDR" or length != 13:
        raise ImageHeaderError(f"PNG does not start with a 13-byte IHDR chunk (found {kind!r}, {length})")
    body = chunk[8:21]
    if zlib.crc32(chunk[4:21]) != int.from_bytes(chunk[21:25], "big"):
        raise ImageHeaderError("PNG IHDR CRC mismatch (corrupt header)")
    width, height = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
    depth, colour = body[8], body[9]
    if not 0 < width < 1 << 31 or not 0 < height < 1 << 31:
        raise ImageHeaderError(f"PNG IHDR declares an invalid size {width}x{height}")
    if colour not in _PNG_CHANNELS or depth not in _PNG_DEPTHS[colour]:
        raise ImageHeaderError(f"PNG IHDR: bit depth {depth} with colour type {colour} is invalid")
    return ImageHeader(width, height, _PNG_CHANNELS[colour])


def _jpeg_header(raw: bytes) -> ImageHeader:
    pos = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        if pos >= len(raw) or raw[pos] != 0xFF:
            found = "end of data" if pos >= len(raw) else f"byte 0x{raw[pos]:02x}"
            raise ImageHeaderError(f"malformed JPEG: expected a marker at offset {pos}, found {found}")
        match = _FILL.match(raw, pos)
        pos = match.end() if match else pos
        if pos >= len(raw):
            raise ImageHeaderError("truncated JPEG: data ends inside marker padding")
        marker = raw[pos]
        pos += 1
        if marker == 0x00:
            raise ImageHeaderError(f"malformed JPEG: stuffed byte 0xff00 at offset {pos - 2} in the header")
        if marker in _STANDALONE:
            continue
        if marker in (0xD8, 0xD9, 0xDA):
            name = {0xD8: "a second SOI", 0xD9: "EOI", 0xDA: "SOS (scan data)"}[marker]
            raise ImageHeaderError(f"malformed JPEG: {name} before any frame header (SOF)")
        if pos + 2 > len(raw):
            raise ImageHeaderError(f"truncated JPEG: segment 0x{marker:02x} has no length")
        length = int.from_bytes(raw[pos:pos + 2], "big")
        if length < 2 or pos + length > len(raw):
            raise ImageHeaderError(f"truncated or malformed JPEG: segment 0x{marker:02x} at offset "
                                   f"{pos - 2} declares {length} bytes, {len(raw) - pos} remain")
        if marker in SOF_MARKERS:
            return _sof(raw[pos + 2:pos + length], marker)
        pos += length
    raise ImageHeaderError(f"JPEG has more than {MAX_JPEG_SEGMENTS} segments before its frame header")


def _sof(body: bytes, marker: int) -> ImageHeader:
    if len(body) < 6:
        raise ImageHeaderError(f"truncated JPEG frame header (SOF 0x{marker:02x}, {len(body)} bytes)")
    height, width, channels = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5]
    if height == 0:
        raise ImageHeaderError("JPEG frame header leaves the height to a DNL marker; not supported")
    if width == 0 or channels == 0:
        raise ImageHeaderError(f"JPEG frame header declares {width}x{height} with {channels} components")
    if len(body) < 6 + 3 * channels:
        raise ImageHeaderError(f"truncated JPEG frame header: {channels} components, {len(body)} bytes")
    return ImageHeader(width, height, channels)
