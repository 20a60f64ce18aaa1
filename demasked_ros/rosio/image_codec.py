"""Decode and encode ROS image payloads without rclpy: plain numpy (and OpenCV for jpeg/png).

Every field of an incoming message is checked before a single pixel is read, because the node and
the bag evaluator must reject malformed frames with a clear reason instead of crashing or, worse,
certifying garbage. ``step`` (bytes per row, possibly padded) is honoured everywhere.

Functions take the message fields rather than a message object so that the same code serves
``sensor_msgs/Image`` from rclpy, from rosbags and from tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from demasked_ros.rosio.decoder_log import capture_stderr
from demasked_ros.rosio.image_headers import ImageHeaderError, read_image_header

#: Bytes per pixel and channel layout of the colour encodings accepted as camera input.
COLOR_ENCODINGS: dict[str, int] = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
#: Bytes per pixel of the label encodings.
LABEL_ENCODINGS: dict[str, int] = {"mono8": 1, "mono16": 2}
#: Compressed formats accepted (``CompressedImage.format`` may carry extra words, e.g. "rgb8; jpeg").
COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "jpg", "png")


class ImageCodecError(ValueError):
    """A malformed or unsupported image message; the text says which field is wrong and why."""


def _as_bytes_view(data: Any) -> np.ndarray:
    """View ``data`` (bytes, bytearray, memoryview, array.array('B'), uint8 ndarray) as flat uint8."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageCodecError(f"image data must be uint8 bytes, got an array of {data.dtype}")
        return data.reshape(-1)
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except (TypeError, ValueError) as error:
        if isinstance(data, (list, tuple)):
            try:
                return np.asarray(data, dtype=np.uint8).reshape(-1)
            except (OverflowError, ValueError) as inner:
                raise ImageCodecError(f"image data is not a byte sequence: {inner}") from inner
        raise ImageCodecError(f"image data is not a byte buffer ({type(data).__name__})") from error


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ImageCodecError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_geometry(
    encoding: str,
    height: Any,
    width: Any,
    step: Any,
    data: np.ndarray,
    bytes_per_pixel: int,
    max_pixels: int | None,
) -> tuple[int, int, int]:
    """Validate sizes against each other and the buffer; return (height, width, step) as ints."""
    height, width, step = (_check_int(n, v) for n, v in (("height", height), ("width", width),
                                                          ("step", step)))
    if height <= 0 or width <= 0:
        raise ImageCodecError(f"zero or negative image size {height}x{width} ({encoding})")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageCodecError(
            f"image {height}x{width} has {height * width} pixels, more than the maximum {max_pixels}"
        )
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageCodecError(
            f"step {step} is smaller than width*bytes_per_pixel = {width}*{bytes_per_pixel} = "
            f"{row_bytes} ({encoding})"
        )
    # The last row needs only its pixels, but ROS requires len(data) == height*step; be strict.
    if data.size < height * step:
        raise ImageCodecError(
            f"data has {data.size} bytes, fewer than height*step = {height}*{step} = {height * step}"
        )
    return height, width, step


def _rows(data: np.ndarray, height: int, width: int, step: int, bytes_per_pixel: int) -> np.ndarray:
    """``height x width x bytes_per_pixel`` uint8 view of the pixel bytes, skipping row padding."""
    padded = data[: height * step].reshape(height, step)
    return padded[:, : width * bytes_per_pixel].reshape(height, width, bytes_per_pixel)


def decode_raw(
    encoding: str,
    height: Any,
    width: Any,
    step: Any,
    data: Any,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode a raw ``sensor_msgs/Image`` payload into a fresh ``H x W x 3`` uint8 RGB array.

    Accepts rgb8, bgr8, rgba8, bgra8 (alpha dropped) and mono8 (replicated to 3 channels).
    The result never aliases ``data``, so the caller's buffer may be reused.

    Raises:
        ImageCodecError: unknown encoding, zero size, ``step < width*bpp``,
            ``len(data) < height*step``, or more than ``max_pixels`` pixels.
    """
    encoding, _, pixels = _pixel_rows("image", COLOR_ENCODINGS, encoding, height, width, step, data,
                                        max_pixels)
    if encoding in ("rgb8", "rgba8"):
        return np.array(pixels[:, :, :3], order="C", copy=True)
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))


def decode_compressed(format: str, data: Any, max_pixels: int | None = None,
                      on_warning: Callable[[str], None] | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg or png) into ``H x W x 3`` uint8 RGB.

    ``format`` follows image_transport conventions ("jpeg", "png", "rgb8; jpeg compressed bgr8");
    any word naming jpeg/jpg/png is enough. The data must be a JPEG or PNG whose header
    (:func:`~demasked_ros.rosio.image_headers.read_image_header`: the JPEG segment chain walked up
    to its frame header, whatever the padding, or the PNG IHDR) declares at most ``max_pixels``
    pixels; otherwise it is rejected before a single pixel is decoded (decompression bombs).
    ``on_warning`` receives libjpeg/libpng warnings instead of stderr.

    Raises:
        ImageCodecError: unknown format, empty, not JPEG/PNG, bad header, too many pixels, or
            undecodable data.
    """
    import cv2  # rosio ring: OpenCV only where compressed images are used

    words = str(format).lower().replace(";", " ").split()
    if not any(word in COMPRESSED_FORMATS for word in words):
        raise ImageCodecError(
            f"unsupported compressed format {format!r}; expected jpeg or png"
        )
    buffer = _as_bytes_view(data)
    if buffer.size == 0:
        raise ImageCodecError("compressed image has no data")
    try:
        header = read_image_header(buffer)
    except ImageHeaderError as error:
        raise ImageCodecError(f"compressed image rejected before decoding: {error}") from error
    if max_pixels is not None and header.width * header.height > max_pixels:
        raise ImageCodecError(f"compressed image {header.height}x{header.width} has more than the "
                              f"maximum {max_pixels} pixels (rejected before decoding)")
    if on_warning is None:
        decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    else:
        with capture_stderr() as warnings:
            decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        for line in warnings:
            on_warning(line)
    if decoded is None or decoded.ndim != 3 or decoded.size == 0:
        raise ImageCodecError(f"compressed data ({buffer.size} bytes, {format!r}) could not be decoded")
    if decoded.shape[:2] != (header.height, header.width):
        raise ImageCodecError(f"decoded image {decoded.shape[0]}x{decoded.shape[1]} differs from its "
                              f"header's {header.height}x{header.width}")
    return np.ascontiguousarray(decoded[:, :, ::-1])


def decode_labels(
    encoding: str,
    height: Any,
    width: Any,
    step: Any,
    data: Any,
    is_bigendian: bool = False,
) -> np.ndarray:
    """Decode a label image (mono8 -> uint8, mono16 -> uint16) into a fresh ``H x W`` array.

    mono16 honours ``is_bigendian`` (the node publishes little-endian, ``is_bigendian = 0``).

    Raises:
        ImageCodecError: for any encoding other than mono8/mono16 or inconsistent sizes.
    """
    encoding, bpp, pixels = _pixel_rows("label", LABEL_ENCODINGS, encoding, height, width, step, data,
                                        None)
    if bpp == 1:
        return np.array(pixels[:, :, 0], order="C", copy=True)
    dtype = np.dtype(">u2") if is_bigendian else np.dtype("<u2")
    return np.ascontiguousarray(pixels).view(dtype)[:, :, 0].astype(np.uint16)


def encode_rgb8(rgb: np.ndarray) -> tuple[str, int, bytes]:
    """``H x W x 3`` uint8 RGB -> ("rgb8", step, bytes) with no row padding."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
        raise ImageCodecError(f"rgb8 needs a non-empty H x W x 3 uint8 array, got {rgb.dtype} {rgb.shape}")
    return "rgb8", int(rgb.shape[1] * 3), np.ascontiguousarray(rgb).tobytes()


def encode_mono8(array: np.ndarray) -> tuple[str, int, bytes]:
    """``H x W`` integers in 0..255 (bool becomes 0/1) -> ("mono8", step, bytes) with no padding."""
    array = np.asarray(array)
    if array.ndim != 2 or array.size == 0:
        raise ImageCodecError(f"mono8 needs a non-empty H x W array, got shape {array.shape}")
    if array.dtype != np.uint8:
        if array.dtype == bool:
            array = array.astype(np.uint8)
        elif array.min() < 0 or array.max() > 255:
            raise ImageCodecError(f"values {array.min()}..{array.max()} do not fit in mono8")
        else:
            array = array.astype(np.uint8)
    return "mono8", int(array.shape[1]), np.ascontiguousarray(array).tobytes()


def encode_mono16(array: np.ndarray) -> tuple[str, int, bytes]:
    """``H x W`` integers in 0..65535 -> ("mono16", step, little-endian bytes; is_bigendian = 0)."""
    array = np.asarray(array)
    if array.ndim != 2 or array.size == 0:
        raise ImageCodecError(f"mono16 needs a non-empty H x W array, got shape {array.shape}")
    if array.dtype != np.uint16 and (array.min() < 0 or array.max() > 65535):
        raise ImageCodecError(f"values {array.min()}..{array.max()} do not fit in mono16")
    return "mono16", int(array.shape[1] * 2), np.ascontiguousarray(array, dtype="<u2").tobytes()


def _pixel_rows(kind: str, table: dict[str, int], encoding: object, height: int, width: int, step: int,
                data: Any, max_pixels: int | None) -> tuple[str, int, np.ndarray]:
    """Validate encoding and geometry; return (encoding, bytes per pixel, H x W x bpp view)."""
    if not isinstance(encoding, str) or encoding.lower() not in table:
        raise ImageCodecError(f"unsupported {kind} encoding {encoding!r}; expected one of {sorted(table)}")
    name = encoding.lower()
    bpp = table[name]
    buffer = _as_bytes_view(data)
    height, width, step = _check_geometry(name, height, width, step, buffer, bpp, max_pixels)
    return name, bpp, _rows(buffer, height, width, step, bpp)
