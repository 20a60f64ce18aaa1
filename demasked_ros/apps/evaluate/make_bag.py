"""``demasked-make-bag``: write a camera bag (frames + aligned ground-truth labels) for replay and tests.

Frames come from a dataset folder (``--dataset camvid --clip`` gives the CamVid 15 Hz clip) or from the
procedural street generator (``--procedural N --seed S``). Frame ``i`` is stamped
``start + i / rate``; its label image (mono8, or mono16 for ids above 255) carries the same header
stamp, so :class:`~demasked_ros.rosio.bagio.BagFrameSource` pairs them exactly.

Exit codes: 0 written; 1 written but some frames could not be read (listed, and missing from the bag);
2 bad arguments or input data; 3 the bag could not be written; 130 interrupted (what was written is a
closed, readable bag).

Examples::

    demasked-make-bag runs/camvid_clip --dataset camvid --split val --clip --rate 15
    demasked-make-bag runs/drive.db3dir --procedural 60 --seed 7 --storage sqlite3 --compression jpeg
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from demasked_ros.datasets.base import DatasetError, FrameError, FrameSource, open_dataset, registered_layouts
from demasked_ros.datasets.camvid import CamVidSource, camvid_clip, find_camvid_root
from demasked_ros.datasets.procedural import ProceduralSource
from demasked_ros.rosio.bagio import STORAGES, BagError, BagWriter

EXIT_OK, EXIT_PARTIAL, EXIT_BAD_INPUT, EXIT_WRITE_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_START_S = 1_700_000_000.0
"""Default stamp of the first frame (a fixed date, so bags are reproducible; 0 reads as "unset")."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="demasked-make-bag",
        description="Write a rosbag2 with camera frames and aligned label images from a dataset folder "
                    "or the procedural street generator.",
        epilog="Exit codes: 0 ok, 1 some frames unreadable, 2 bad input, 3 write failed, 130 interrupted.",
    )
    parser.add_argument("output", type=Path, help="bag directory to create")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="LAYOUT_OR_DIR",
                        help=f"a registered layout ({', '.join(sorted(registered_layouts()))}; its data "
                             "found via --root or the default location) or a dataset folder")
    source.add_argument("--procedural", type=int, metavar="N", help="N frames of a procedural drive")
    parser.add_argument("--root", type=Path,
                        help="dataset root for --dataset LAYOUT "
                             "(default for camvid: $DEMASKED_CAMVID or ../shared/data/camvid)")
    parser.add_argument("--split", default=None, help="dataset split (default: val)")
    parser.add_argument("--clip", action="store_true", help="CamVid 15 Hz clip val/0016E5_07959..08159")
    parser.add_argument("--first", help="first file name to include (inclusive)")
    parser.add_argument("--last", help="last file name to include (inclusive)")
    parser.add_argument("--limit", type=int, help="at most this many frames")
    parser.add_argument("--seed", type=int, default=0, help="procedural seed (default 0)")
    parser.add_argument("--height", type=int, default=360, help="procedural image height (default 360)")
    parser.add_argument("--width", type=int, default=480, help="procedural image width (default 480)")
    parser.add_argument("--rate", type=float, default=15.0,
                        help="frame rate of the stamps in Hz (default 15)")
    parser.add_argument("--start-time", type=float, default=DEFAULT_START_S,
                        help=f"stamp of the first frame in seconds (default {DEFAULT_START_S:.0f})")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap",
                        help="bag storage (default mcap)")
    parser.add_argument("--compression", choices=("none", "jpeg", "png"), default="none",
                        help="camera frames as raw rgb8 Image (none) or CompressedImage (default none)")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1-100 (default 90)")
    parser.add_argument("--image-topic", default=None,
                        help="camera topic (default /camera/image_raw, or "
                             "/camera/image_raw/compressed with --compression)")
    parser.add_argument("--label-topic", default="/camera/labels",
                        help="label topic (default /camera/labels)")
    parser.add_argument("--no-labels", action="store_true", help="write camera frames only")
    parser.add_argument("--frame-id", default="camera", help="header frame_id (default camera)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag at OUTPUT")
    parser.add_argument("--quiet", action="store_true", help="print only errors")
    return parser


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.rate > 0:
        parser.error(f"--rate must be > 0, got {args.rate}")
    if args.start_time < 0:
        parser.error(f"--start-time must be >= 0, got {args.start_time}")
    if not 1 <= args.jpeg_quality <= 100:
        parser.error(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if args.procedural is not None and (args.clip or args.first or args.last or args.split or args.root):
        parser.error("--clip/--first/--last/--split/--root apply to --dataset, not --procedural")
    if args.clip and (args.first or args.last or args.split not in (None, "val")):
        parser.error("--clip selects val/0016E5_07959..08159; do not combine it with --first/--last/--split")


def open_source(args: argparse.Namespace) -> FrameSource:
    """The frame source the arguments describe. Raises DatasetError for missing or bad data."""
    if args.procedural is not None:
        return ProceduralSource(args.procedural, seed=args.seed, height=args.height, width=args.width,
                                rate_hz=args.rate)
    layouts = registered_layouts()
    with_labels = not args.no_labels
    if args.dataset in layouts:
        root = args.root
        if root is None:
            if args.dataset != "camvid":
                raise DatasetError(f"--dataset {args.dataset} needs --root DIR")
            root = find_camvid_root()
            if root is None:
                raise DatasetError("CamVid not found: pass --root DIR or set $DEMASKED_CAMVID "
                                   "(default location ../shared/data/camvid next to the repository)")
        if args.dataset == "camvid" and args.clip:
            source: FrameSource = camvid_clip(root, with_labels=with_labels)
        elif args.dataset == "camvid":
            source = CamVidSource(root, args.split or "val", first=args.first, last=args.last,
                                  with_labels=with_labels)
        else:
            source = open_dataset(root, layout=args.dataset, split=args.split)
    else:
        if args.clip:
            raise DatasetError("--clip needs --dataset camvid")
        options = {"first": args.first, "last": args.last, "with_labels": with_labels}  # layout options
        source = open_dataset(args.dataset, split=args.split,
                              **{k: v for k, v in options.items() if v is not None})
    return source


def write_bag(args: argparse.Namespace, source: FrameSource) -> tuple[int, list[FrameError]]:
    """Write the bag; returns (frames written, unreadable frames). Raises BagError on write failure."""
    compressed = args.compression != "none"
    image_topic = args.image_topic or ("/camera/image_raw/compressed" if compressed else "/camera/image_raw")
    if not args.no_labels and args.label_topic == image_topic:
        raise BagError(f"the label topic and the image topic are both {image_topic!r}")
    start_ns = round(args.start_time * 1_000_000_000)
    wanted = range(args.limit) if args.limit is not None else None
    written, failures = 0, []
    class_info = None if args.no_labels else source.class_info
    with BagWriter(args.output, args.storage, class_info=class_info, overwrite=args.overwrite) as bag:
        for record in source.iter_records(wanted):
            if isinstance(record, FrameError):
                failures.append(record)
                print(f"demasked-make-bag: skipping unreadable frame {record.index} ({record.name}): "
                      f"{record.message}", file=sys.stderr)
                continue
            stamp = start_ns + round(record.index * 1_000_000_000 / args.rate)
            if compressed:
                bag.write_compressed(image_topic, stamp, record.image, args.compression, args.jpeg_quality,
                                     args.frame_id)
            else:
                bag.write_image(image_topic, stamp, record.image, args.frame_id)
            if not args.no_labels and record.labels is not None:
                bag.write_labels(args.label_topic, stamp, record.labels, args.frame_id)
            written += 1
    return written, failures


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``demasked-make-bag``; returns the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    started = time.perf_counter()
    try:
        source = open_source(args)
    except DatasetError as error:
        print(f"demasked-make-bag: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        written, failures = write_bag(args, source)
    except KeyboardInterrupt:
        print(f"demasked-make-bag: interrupted; {args.output} holds the frames written so far",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BagError as error:
        print(f"demasked-make-bag: error: {error}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    if not args.quiet:
        print(f"wrote {written} frames ({args.compression if args.compression != 'none' else 'rgb8'}"
              f"{'' if args.no_labels else ' + labels'}) at {args.rate:g} Hz to {args.output} "
              f"({args.storage}) in {time.perf_counter() - started:.1f} s")
    if failures:
        print(f"demasked-make-bag: {len(failures)} frame(s) could not be read and are missing from the bag",
              file=sys.stderr)
        return EXIT_PARTIAL
    if written == 0:
        print("demasked-make-bag: error: no frames written", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
