"""CamVid (SegNet 11-class form) folder reader: ``root/<split>/*.png`` images, ``root/<split>annot/`` labels.

Stamps come from ``root/sequences.tsv`` (30 fps frame index per file) when present, so the 15 Hz clip
``val/0016E5_07959.png .. val/0016E5_08159.png`` keeps its real timing. Sequences are laid end to end on
one time axis (each starts one second after the previous one's last frame, in file-name order, over the
whole table), so stamps are unique and increase with the file name, independent of the selected subset.
Without the table, frame i of the split gets ``i / 30`` s.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from demasked_ros.core.classes import CAMVID, ClassInfo
from demasked_ros.datasets.base import (
    DatasetError,
    DatasetLayout,
    Frame,
    FrameError,
    FrameRecord,
    SourceBase,
    check_frame_arrays,
    register_layout,
)

CAMVID_FPS = 30
"""Frame rate of the CamVid source videos (``frame_index_30fps`` in sequences.tsv)."""

CAMVID_SPLITS = ("val", "train", "test")
CLIP_FIRST = "0016E5_07959.png"
CLIP_LAST = "0016E5_08159.png"
"""The 101 consecutive val frames at 15 Hz (about 6.7 s of driving), the best clip for a camera bag."""

CAMVID_ENV = "DEMASKED_CAMVID"

_NS_PER_FRAME = 1_000_000_000 / CAMVID_FPS


def find_camvid_root() -> Path | None:
    """Locate the CamVid folder: ``$DEMASKED_CAMVID`` if set, else ``../shared/data/camvid`` next to the repo.

    Returns ``None`` when the folder is absent (callers skip or report), never downloads anything.
    """
    configured = os.environ.get(CAMVID_ENV)
    if configured:
        candidate = Path(configured).expanduser()
    else:
        candidate = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"
    candidate = candidate.resolve()
    return candidate if looks_like_camvid(candidate) else None


def looks_like_camvid(root: Path) -> bool:
    """True when ``root`` has at least one ``<split>/`` + ``<split>annot/`` folder pair."""
    return any((root / split).is_dir() and (root / f"{split}annot").is_dir() for split in CAMVID_SPLITS)


def _sequence_stamps(table: Path) -> dict[str, int]:
    """Map file name -> stamp (ns) from sequences.tsv, sequences laid end to end (see module doc)."""
    frames: dict[str, tuple[str, int]] = {}
    try:
        with table.open(newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                frames[row["file"]] = (row["sequence"], int(row["frame_index_30fps"]))
    except (OSError, KeyError, ValueError, csv.Error) as error:
        raise DatasetError(f"{table}: cannot read the sequence table ({error})") from error
    last_index: dict[str, int] = {}
    first_name: dict[str, str] = {}
    for name, (sequence, index) in frames.items():
        last_index[sequence] = max(index, last_index.get(sequence, 0))
        first_name[sequence] = min(name, first_name.get(sequence, name))
    offsets: dict[str, int] = {}
    offset = 0
    for sequence in sorted(last_index, key=lambda seq: first_name[seq]):  # file-name order
        offsets[sequence] = offset
        offset += last_index[sequence] + CAMVID_FPS  # one second gap before the next sequence
    return {
        name: round((offsets[sequence] + index) * _NS_PER_FRAME)
        for name, (sequence, index) in frames.items()
    }


@dataclass(frozen=True)
class _Entry:
    index: int
    name: str
    stamp_ns: int


class CamVidSource(SourceBase):
    """CamVid split as a :class:`~demasked_ros.datasets.base.FrameSource` (labels 0-10, void = 11).

    Args:
        root: dataset folder holding ``<split>/`` and ``<split>annot/``.
        split: ``"val"``, ``"train"`` or ``"test"``.
        names: only these file names (in sorted order); unknown names are an error.
        first, last: only files whose names sort within ``[first, last]`` (inclusive).
        limit: at most this many files (after the other filters).
        with_labels: read the ``annot`` folder (False for image-only runs).

    Raises:
        DatasetError: missing folders, unknown names, empty selection, unreadable sequence table.
    """

    def __init__(self, root: str | Path, split: str = "val", *, names: Sequence[str] | None = None,
                 first: str | None = None, last: str | None = None, limit: int | None = None,
                 with_labels: bool = True) -> None:
        self.root = Path(root)
        self.split = split
        self.with_labels = with_labels
        image_dir, label_dir = self.root / split, self.root / f"{split}annot"
        if not image_dir.is_dir():
            raise DatasetError(f"CamVid split folder {image_dir} does not exist")
        if with_labels and not label_dir.is_dir():
            raise DatasetError(f"CamVid label folder {label_dir} does not exist")
        available = sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() == ".png")
        selected = available
        if names is not None:
            missing = sorted(set(names) - set(available))
            if missing:
                more = " ..." if len(missing) > 5 else ""
                raise DatasetError(f"{image_dir}: no such files {missing[:5]}{more}")
            wanted = set(names)
            selected = [n for n in selected if n in wanted]
        if first is not None:
            selected = [n for n in selected if n >= first]
        if last is not None:
            selected = [n for n in selected if n <= last]
        if limit is not None:
            if limit < 0:
                raise DatasetError(f"limit must be >= 0, got {limit}")
            selected = selected[:limit]
        if not selected:
            raise DatasetError(f"{image_dir}: the selection is empty")
        table = self.root / "sequences.tsv"
        stamps = _sequence_stamps(table) if table.is_file() else {}
        position = {name: i for i, name in enumerate(available)}
        self._entries = [
            _Entry(i, name, stamps.get(name, round(position[name] * _NS_PER_FRAME)))
            for i, name in enumerate(selected)
        ]

    @property
    def class_info(self) -> ClassInfo:
        """CamVid's 11 classes, ignore index 11."""
        return CAMVID

    @property
    def stamps_ns(self) -> list[int]:
        """Stamps of the selected frames, in order (known without reading any image)."""
        return [entry.stamp_ns for entry in self._entries]

    @property
    def names(self) -> list[str]:
        """File names of the selected frames, in order."""
        return [entry.name for entry in self._entries]

    def __repr__(self) -> str:
        return f"CamVidSource({str(self.root)!r}, split={self.split!r}, frames={len(self)})"

    def iter_records(self, indices: Container[int] | None = None) -> Iterator[FrameRecord]:
        """Yield a Frame (or a FrameError for an unreadable file) per selected file, in name order."""
        for entry in self._entries:
            if indices is not None and entry.index not in indices:
                continue
            try:
                yield self._read(entry)
            except DatasetError as error:
                yield FrameError(entry.index, entry.stamp_ns, entry.name, str(self.root), str(error))

    def _read(self, entry: _Entry) -> Frame:
        image_path = self.root / self.split / entry.name
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot read image {image_path}")
        image = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        labels = None
        if self.with_labels:
            label_path = self.root / f"{self.split}annot" / entry.name
            labels = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
            if labels is None:
                raise DatasetError(f"cannot read labels {label_path}")
            if labels.ndim != 2:
                raise DatasetError(f"{label_path}: labels must be single-channel, got shape {labels.shape}")
            if labels.size and int(labels.max()) > CAMVID.ignore_index:
                raise DatasetError(f"{label_path}: label {int(labels.max())} > void ({CAMVID.ignore_index})")
        check_frame_arrays(image, labels)
        return Frame(entry.index, entry.stamp_ns, image, labels, entry.name, str(self.root))


def camvid_clip(root: str | Path | None = None, *, with_labels: bool = True) -> CamVidSource:
    """The 15 Hz CamVid clip (val/0016E5_07959.png .. val/0016E5_08159.png, 101 frames).

    ``root=None`` uses :func:`find_camvid_root`. Raises DatasetError when the data is absent.
    """
    resolved = Path(root) if root is not None else find_camvid_root()
    if resolved is None:
        raise DatasetError(f"CamVid not found: set ${CAMVID_ENV} or put it in ../shared/data/camvid")
    return CamVidSource(resolved, "val", first=CLIP_FIRST, last=CLIP_LAST, with_labels=with_labels)


register_layout(DatasetLayout(
    name="camvid",
    splits=CAMVID_SPLITS,
    matches=looks_like_camvid,
    open=CamVidSource,
    description="<split>/*.png images + <split>annot/*.png labels (11 classes, void 11)",
))
