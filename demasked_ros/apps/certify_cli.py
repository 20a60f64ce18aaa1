"""``demasked-certify``: certify one image and write colour label and certificate PNGs.

Example::

    demasked-certify frame.png --model model.onnx --classes camvid --mode recovery \
        --scheme column --patch 0.005 --out out/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from demasked_ros.apps.cli_args import patch_argument
from demasked_ros.core.classes import CAMVID, ClassInfo, palette
from demasked_ros.core.errors import CoreError
from demasked_ros.core.spec import DEFAULT_PATCH, MODES, CertSpec, schemes_for
from demasked_ros.core.visualize import certification_image, colorize, overlay
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.factory import (
    DEMASKER_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegmenterSpec,
    make_demasker,
    make_segmenter,
)
from demasked_ros.engines.protocols import Segmenter


class CliError(Exception):
    """A user error: reported as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of ``demasked-certify``."""
    parser = argparse.ArgumentParser(prog="demasked-certify", description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path, help="RGB image to certify (PNG, JPEG, ...)")
    parser.add_argument("--model", type=Path, default=None,
                        help="segmentation model (.onnx); default: the packaged CamVid segmenter")
    parser.add_argument("--classes", default="camvid",
                        help="'camvid', a number of classes, or a text file with one class name per line")
    parser.add_argument("--input-size", default=None,
                        help="model input HxW, e.g. 360x480 (default: image size)")
    parser.add_argument("--mean", type=float, nargs=3, default=None, help="normalisation mean, 0-255 units")
    parser.add_argument("--std", type=float, nargs=3, default=None, help="normalisation std, 0-255 units")
    parser.add_argument("--bgr", action="store_true", help="the model expects BGR channel order")
    parser.add_argument("--mode", choices=MODES, default="recovery")
    parser.add_argument("--scheme", default=None,
                        help=f"recovery: {list(schemes_for('recovery'))}; "
                             f"detection: {list(schemes_for('detection'))} (default column)")
    parser.add_argument("--patch", type=patch_argument, default=None,
                        help="patch as a fraction of the image area or HxW pixels "
                             "(default 0.005 recovery, 0.01 detection)")
    parser.add_argument("--n-patches", type=int, default=1, help="independent patches (recovery)")
    parser.add_argument("--k", type=int, default=None, help="number of masks")
    parser.add_argument("--band-width", type=int, default=None, help="detection band width in pixels")
    parser.add_argument("--demasker", choices=DEMASKER_NAMES, default="default")
    parser.add_argument("--providers", nargs="+", default=["CPUExecutionProvider"])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for inference")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 user error, 1 model/engine error)."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (CliError, CoreError) as error:
        print(f"demasked-certify: error: {error}", file=sys.stderr)
        return 2
    except EngineError as error:
        print(f"demasked-certify: certification failed: {error}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    """Certify ``args.image`` and write ``<stem>_labels.png`` and ``<stem>_certified.png``."""
    import cv2

    from demasked_ros.engines.certifier import Certifier

    image = read_rgb(args.image)
    height, width = image.shape[:2]
    spec = build_spec(args)
    masks = spec.masks(height, width)
    classes = resolve_classes(args.classes)
    segmenter = build_segmenter(args, classes)
    demasker = make_demasker(args.demasker, threads=args.threads)
    result = Certifier(segmenter, demasker, masks).certify(image)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.image.stem
    label_path = args.out / f"{stem}_labels.png"
    overlay_path = args.out / f"{stem}_certified.png"
    cert_path = args.out / f"{stem}_certificate.png"
    colors = classes.colors
    cv2.imwrite(str(label_path), colorize(result.labels, colors)[..., ::-1])
    cv2.imwrite(str(overlay_path), overlay(image, result.labels, result.certified, colors)[..., ::-1])
    cv2.imwrite(str(cert_path), certification_image(result.certified))
    word = "certified" if masks.mode == "recovery" else "verified"
    print(f"{masks.describe()}")
    print(f"{word} fraction: {100 * result.certified_fraction:.2f} %  "
          f"({result.timings['total'] * 1000:.0f} ms)")
    print(f"wrote {label_path}, {overlay_path}, {cert_path}")
    return 0


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB, or raise :class:`CliError`."""
    import cv2

    if not path.is_file():
        raise CliError(f"image not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CliError(f"cannot read {path} as an image")
    return np.ascontiguousarray(bgr[..., ::-1])


def build_spec(args: argparse.Namespace) -> CertSpec:
    """The certification spec asked for on the command line (CoreError names a bad value)."""
    patch = DEFAULT_PATCH[args.mode] if args.patch is None else args.patch
    return CertSpec(mode=args.mode, scheme=args.scheme or "column", patch=patch, n_patches=args.n_patches,
                    k=args.k, band_width=args.band_width)


def resolve_classes(spec: str) -> ClassInfo:
    """Class names and colours from 'camvid', a class count or a names file."""
    if spec == "camvid":
        return CAMVID
    if spec.isdigit():
        count = int(spec)
        if count < 1:
            raise CliError("--classes needs at least one class")
        names = tuple(f"class_{i}" for i in range(count))
    else:
        path = Path(spec)
        if not path.is_file():
            raise CliError(f"--classes: {spec!r} is neither 'camvid', a number, nor a file")
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        if not names:
            raise CliError(f"--classes: {path} holds no class names")
    return ClassInfo(names=names, colors=palette(len(names)))


def build_segmenter(args: argparse.Namespace, classes: ClassInfo) -> Segmenter:
    """The segmenter from the command line (a model file), or the packaged default."""
    input_size = None
    if args.input_size:
        try:
            h, w = (int(v) for v in args.input_size.lower().split("x"))
        except ValueError as error:
            raise CliError(f"--input-size must be HxW, got {args.input_size!r}") from error
        input_size = (h, w)
    spec = SegmenterSpec(name="default" if args.model is None else str(args.model), class_names=classes.names,
                         input_size=input_size, mean=tuple(args.mean or IMAGENET_MEAN),
                         std=tuple(args.std or IMAGENET_STD), channel_order="BGR" if args.bgr else "RGB",
                         providers=tuple(args.providers), threads=args.threads)
    return make_segmenter(spec)


if __name__ == "__main__":
    sys.exit(main())
