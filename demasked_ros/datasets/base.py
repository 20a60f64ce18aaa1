"""The frame-source interface shared by dataset readers, the procedural generator and bag readers.

The evaluator and ``demasked-make-bag`` only see :class:`FrameSource`: an indexed, re-iterable sequence
of :class:`Frame` records (RGB image, optional ground-truth labels, a stamp). Readers keep only paths and
options, never open file handles, so a source can be pickled to worker processes or Ray tasks and
iterated there (each worker passes the frame indices of its shard to :meth:`FrameSource.iter_records`).

A frame that cannot be read is never dropped silently: :meth:`FrameSource.iter_records` yields a
:class:`FrameError` in its place, and plain iteration (``for frame in source``) raises
:class:`DatasetError` on it.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from demasked_ros.core.classes import ClassInfo


class DatasetError(ValueError):
    """A dataset, frame source or frame cannot be read (missing folder, bad file, unknown layout).

    A ``ValueError`` so that command-line tools can report bad user input with one ``except``.
    """


@dataclass(frozen=True)
class Frame:
    """One camera frame with optional ground truth.

    Attributes:
        index: position of the frame in its source (0-based, dense); the key for sharding and resume.
        stamp_ns: capture time in nanoseconds (header stamp for bags); strictly increasing within a
            source built by this package.
        image: H x W x 3 uint8 RGB.
        labels: H x W uint8 or uint16 class ids (the source's ``class_info.ignore_index`` = void), or
            ``None`` when the source has no ground truth for this frame.
        name: human-readable identifier (file name, or ``topic@stamp`` for bags).
        source: where the frame came from (dataset folder or bag path), for reports and errors.
    """

    index: int
    stamp_ns: int
    image: np.ndarray
    labels: np.ndarray | None
    name: str
    source: str


@dataclass(frozen=True)
class FrameError:
    """A frame that exists in the source but could not be decoded; reported instead of dropped.

    Attributes mirror :class:`Frame`; ``message`` says what was wrong (for logs and reports).
    """

    index: int
    stamp_ns: int
    name: str
    source: str
    message: str


FrameRecord = Frame | FrameError
"""What :meth:`FrameSource.iter_records` yields."""


@runtime_checkable
class FrameSource(Protocol):
    """An indexed, re-iterable, picklable sequence of frames.

    ``len(source)`` is the number of records :meth:`iter_records` yields without a filter (good and bad
    frames together), so progress bars and sharding can rely on it. ``class_info`` describes the label
    ids (``None`` when unknown, e.g. a bag without labels).
    """

    @property
    def class_info(self) -> ClassInfo | None:
        """Names, colours and ignore index of the ground-truth labels, or ``None`` if unknown."""
        ...

    def __len__(self) -> int:
        """Number of records (frames plus unreadable frames) in the source."""
        ...

    def __iter__(self) -> Iterator[Frame]:
        """Yield every frame in order; raise :class:`DatasetError` on the first unreadable one."""
        ...

    def iter_records(self, indices: Container[int] | None = None) -> Iterator[FrameRecord]:
        """Yield a :class:`Frame` or :class:`FrameError` per record, in order.

        Args:
            indices: only records whose ``index`` is in this container are decoded and yielded
                (``None`` = all). Lets a worker read its shard without decoding the rest.
        """
        ...


def strict_frames(records: Iterator[FrameRecord]) -> Iterator[Frame]:
    """Turn a record stream into a frame stream that raises :class:`DatasetError` on a bad frame.

    The shared implementation of ``FrameSource.__iter__`` for readers in this package.
    """
    for record in records:
        if isinstance(record, FrameError):
            raise DatasetError(f"{record.source}: frame {record.index} ({record.name}): {record.message}")
        yield record


class SourceBase:
    """Base of this package's readers: ``len`` from :attr:`stamps_ns`, ``iter`` strict over records."""

    @property
    def stamps_ns(self) -> list[int]:
        """Stamps of the records, in order (known without decoding any image)."""
        raise NotImplementedError

    def iter_records(self, indices: Container[int] | None = None) -> Iterator[FrameRecord]:
        """Yield a :class:`Frame` or :class:`FrameError` per record (see :class:`FrameSource`)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def __iter__(self) -> Iterator[Frame]:
        return strict_frames(self.iter_records())


def check_frame_arrays(image: np.ndarray, labels: np.ndarray | None) -> None:
    """Validate a frame's arrays (RGB uint8 image, labels of the same H x W); raise DatasetError.

    Readers call this so that every consumer can rely on the :class:`Frame` contract.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DatasetError(f"image must be H x W x 3 uint8, got {image.shape} {image.dtype}")
    if labels is None:
        return
    if labels.dtype not in (np.uint8, np.uint16) or labels.ndim != 2:
        raise DatasetError(f"labels must be H x W uint8/uint16, got {labels.shape} {labels.dtype}")
    if labels.shape != image.shape[:2]:
        raise DatasetError(f"labels are {labels.shape[1]}x{labels.shape[0]} but the image is "
                           f"{image.shape[1]}x{image.shape[0]} (W x H)")


@dataclass(frozen=True)
class DatasetLayout:
    """A folder layout that :func:`open_dataset` can read (CamVid now; ADE20K, Cityscapes, ... later).

    To add a layout, write a reader class implementing :class:`FrameSource` whose constructor takes
    ``(root, split=..., **options)``, and register it once at import time::

        register_layout(DatasetLayout(name="cityscapes", splits=("train", "val"),
                                      matches=looks_like_cityscapes, open=CityscapesSource,
                                      description="leftImg8bit/ + gtFine/ (labelTrainIds)"))

    Attributes:
        name: key used on command lines (``--dataset NAME``).
        splits: split names the layout knows (the first is the default for evaluation).
        matches: ``matches(root)`` is True when ``root`` is a folder in this layout.
        open: ``open(root, split, **options) -> FrameSource``.
        description: one line for ``--help`` and error messages.
    """

    name: str
    splits: tuple[str, ...]
    matches: Callable[[Path], bool]
    open: Callable[..., FrameSource]
    description: str


_LAYOUTS: dict[str, DatasetLayout] = {}


def register_layout(layout: DatasetLayout) -> None:
    """Make a folder layout available to :func:`open_dataset`; re-registering a name replaces it."""
    _LAYOUTS[layout.name] = layout


def registered_layouts() -> dict[str, DatasetLayout]:
    """The registered layouts by name (a copy)."""
    return dict(_LAYOUTS)


def open_dataset(path: str | Path, layout: str | None = None, split: str | None = None,
                 **options: object) -> FrameSource:
    """Open a dataset folder as a :class:`FrameSource`.

    ``path`` may be the dataset root or one of its split folders (``.../camvid/val``), in which case
    the split is taken from the folder name. ``layout=None`` detects the layout from the folder.

    Raises:
        DatasetError: missing folder, unknown or undetectable layout, unknown split.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist")
    if layout is not None and layout not in _LAYOUTS:
        raise DatasetError(f"unknown dataset layout {layout!r}; known: {sorted(_LAYOUTS)}")
    candidates = [_LAYOUTS[layout]] if layout is not None else list(_LAYOUTS.values())
    for candidate in candidates:
        if candidate.matches(folder):
            return candidate.open(folder, split=split or candidate.splits[0], **options)
        if folder.name in candidate.splits and candidate.matches(folder.parent):
            if split is not None and split != folder.name:
                raise DatasetError(f"{folder} is the {folder.name!r} split but split={split!r} was asked")
            return candidate.open(folder.parent, split=folder.name, **options)
    known = "; ".join(f"{lay.name}: {lay.description}" for lay in candidates) or "none registered"
    raise DatasetError(f"{folder} is not in a known dataset layout ({known})")
