"""A PNG contact sheet of a recorded run: a few frames, each as input | overlay | certification map.

The demo writes one next to its bag; any bag holding the node's outputs (input image, ``overlay``,
``certification`` and ``alert`` with matching header stamps) works::

    python -m demasked_ros.apps.contact_sheet runs/demo/20260101-120000 --rows 4 --out sheet.png

Frames are matched by header stamp (the node copies the input header to every output), picked evenly
over the run among those with a certificate (an errored frame has none), and captioned with their
certified fraction, so the picture says what the run measured.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from demasked_ros.rosio import topics
from demasked_ros.rosio.image_codec import decode_raw
from demasked_ros.rosio.typestore import header_stamp_ns, package_typestore

INPUT_TOPIC = "/" + topics.input_topic("raw")
_BACKGROUND = (32, 32, 32)
_TEXT = (235, 235, 235)
_MARGIN = 6
_LINE = 22
_FONT = cv2.FONT_HERSHEY_SIMPLEX
COLUMNS = ("input", "overlay (hatched = not certified)", "certification (white = certified)")


@dataclass(frozen=True)
class SheetRow:
    """One frame: RGB input and overlay (H x W x 3 uint8), mono8 certificate (255 = certified)."""

    caption: str
    image: np.ndarray
    overlay: np.ndarray
    certification: np.ndarray


def pick_indices(count: int, rows: int) -> list[int]:
    """``rows`` indices spread evenly over ``range(count)``, first and last included, no repeats."""
    if count <= 0 or rows <= 0:
        return []
    picks = min(rows, count)
    if picks == 1:
        return [count // 2]
    return [round(i * (count - 1) / (picks - 1)) for i in range(picks)]  # steps >= 1: all distinct


def _thumb(image: np.ndarray, width: int) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _text(canvas: np.ndarray, text: str, x: int, y: int, width: int) -> None:
    """Draw ``text`` with its baseline at y, shortened with '...' to fit ``width`` pixels."""
    scale = 0.45
    while text and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width:
        text = text[:-4] + "..." if len(text) > 4 else ""
    cv2.putText(canvas, text, (x, y), _FONT, scale, _TEXT, 1, cv2.LINE_AA)


def render_contact_sheet(rows: Sequence[SheetRow], title: str, thumb_width: int = 320) -> np.ndarray:
    """The sheet as an RGB uint8 image: a title line, column headings, then one captioned row per frame."""
    if not rows:
        raise ValueError("a contact sheet needs at least one frame")
    thumbs = [[_thumb(a, thumb_width) for a in (r.image, r.overlay, r.certification)] for r in rows]
    row_height = max(t.shape[0] for row in thumbs for t in row)
    width = 3 * thumb_width + 4 * _MARGIN
    height = 2 * _LINE + len(rows) * (_LINE + row_height) + _MARGIN
    canvas = np.full((height, width, 3), _BACKGROUND, np.uint8)
    _text(canvas, title, _MARGIN, _LINE - 7, width - 2 * _MARGIN)
    for column, heading in enumerate(COLUMNS):
        _text(canvas, heading, _MARGIN + column * (thumb_width + _MARGIN), 2 * _LINE - 7, thumb_width)
    y = 2 * _LINE
    for row, images in zip(rows, thumbs, strict=True):
        _text(canvas, row.caption, _MARGIN, y + _LINE - 7, width - 2 * _MARGIN)
        y += _LINE
        for column, thumb in enumerate(images):
            x = _MARGIN + column * (thumb_width + _MARGIN)
            canvas[y:y + thumb.shape[0], x:x + thumb.shape[1]] = thumb
        y += row_height
    return canvas


def write_contact_sheet(path: Path, rows: Sequence[SheetRow], title: str, thumb_width: int = 320,
                        bits: int = 8) -> Path:
    """Render and write the sheet as a PNG (maximum compression); returns ``path``.

    ``bits`` < 8 keeps that many bits per channel (posterised, centred in each step): a third to half
    the file size at 5 bits, for pictures committed to a repository.
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    sheet = render_contact_sheet(rows, title, thumb_width)
    if bits < 8:
        drop = 8 - bits
        sheet = ((sheet >> drop) << drop) | (1 << (drop - 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"cannot write {path}")
    return path


def rows_from_bag(bag: Path, rows: int = 4, image_topic: str = INPUT_TOPIC,
                  node: str = topics.NODE_NAME) -> list[SheetRow]:
    """Pick ``rows`` certified frames evenly from a recorded run and decode their three images.

    Two passes over the bag: the first reads only the small alert messages (which frames have a
    certificate, and how much), the second decodes just the picked frames' images.
    """
    from rosbags.rosbag2 import Reader

    store = package_typestore()
    wanted_topics = {image_topic: "image", topics.node_topic("overlay", node): "overlay",
                     topics.node_topic("certification", node): "certification"}
    alert_topic = topics.node_topic("alert", node)
    fractions: dict[int, float] = {}
    inputs: set[int] = set()
    with Reader(bag) as reader:
        first = [c for c in reader.connections if c.topic in (alert_topic, image_topic)]
        for connection, _, raw in reader.messages(connections=first):
            if connection.topic == image_topic:
                inputs.add(header_stamp_ns(raw))
                continue
            status: Any = store.deserialize_cdr(raw, connection.msgtype)
            if status.error_code == 0:
                stamp = status.header.stamp.sec * 1_000_000_000 + status.header.stamp.nanosec
                fractions[stamp] = float(status.certified_fraction)
        images: dict[int, dict[str, np.ndarray]] = {}
        wanted = [c for c in reader.connections if c.topic in wanted_topics]
        for connection, _, raw in reader.messages(connections=wanted):
            stamp = header_stamp_ns(raw)
            if stamp not in fractions:
                continue
            msg: Any = store.deserialize_cdr(raw, connection.msgtype)
            images.setdefault(stamp, {})[wanted_topics[connection.topic]] = decode_raw(
                msg.encoding, msg.height, msg.width, msg.step, msg.data)[..., :3]
    complete = sorted(stamp for stamp, found in images.items() if len(found) == 3)
    position = {stamp: number for number, stamp in enumerate(sorted(inputs), 1)}
    result = []
    for index in pick_indices(len(complete), rows):
        stamp = complete[index]
        found = images[stamp]
        caption = (f"frame {position.get(stamp, '?')} of {len(inputs)}: {fractions[stamp] * 100:.1f} % "
                   "certified")
        result.append(SheetRow(caption, found["image"], found["overlay"], found["certification"][..., 0]))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m demasked_ros.apps.contact_sheet BAG``: 0 written, 2 bad bag or no certified frame."""
    parser = argparse.ArgumentParser(prog="python -m demasked_ros.apps.contact_sheet",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path, help="bag directory recorded by the demo (or with the same topics)")
    parser.add_argument("--out", type=Path, help="PNG to write (default <bag>_contact_sheet.png)")
    parser.add_argument("--rows", type=int, default=4, help="frames to show (default 4)")
    parser.add_argument("--width", type=int, default=320, help="thumbnail width in pixels (default 320)")
    parser.add_argument("--image-topic", default=INPUT_TOPIC, help=f"camera topic (default {INPUT_TOPIC})")
    parser.add_argument("--title", default=None, help="title line (default: the bag's name)")
    parser.add_argument("--bits", type=int, default=8, help="bits per colour channel, 1-8 (default 8)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.width < 32 or not 1 <= args.bits <= 8:
        parser.error("--rows must be >= 1, --width >= 32 and --bits in 1..8")
    try:
        rows = rows_from_bag(args.bag, args.rows, args.image_topic)
    except Exception as error:  # rosbags raises several unrelated types for unreadable bags
        print(f"contact_sheet: error: cannot read {args.bag}: {error}", file=sys.stderr)
        return 2
    if not rows:
        print(f"contact_sheet: error: {args.bag} has no frame with input, overlay, certification and a "
              "certificate", file=sys.stderr)
        return 2
    out = args.out or sheet_path(args.bag)
    write_contact_sheet(out, rows, args.title or f"demasked_ros: {args.bag.name}", args.width, args.bits)
    print(f"contact sheet written to {out}")
    return 0


def sheet_path(bag: Path) -> Path:
    """Where the sheet of ``bag`` goes by default: next to it, ``<bag>_contact_sheet.png``."""
    return bag.with_name(bag.name + "_contact_sheet.png")


if __name__ == "__main__":
    sys.exit(main())
