"""Leave-one-sequence-out folds over CamVid train+val, from ``sequences.tsv``.

Why: CamVid val is one 6.7 s clip of sequence 0016E5, which also fills 204 of the 367 train
frames, so val figures measure memory of one drive, not generalisation. A fold holds out every
frame (train and val) of one driving sequence and trains on the others; training, model
selection and evaluation all take their frame lists from here, so they cannot drift apart.

A frame is identified by ``(split, file name)`` because the images live in ``train/`` or ``val/``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from demasked_ros.training.data import TrainingDataError

#: The sequences of CamVid train+val (sequences.tsv): 62, 101 and 305 frames.
FOLD_SEQUENCES: tuple[str, ...] = ("0001TP", "0006R0", "0016E5")
#: Splits the folds are drawn from (the test split is kept for independent evaluation).
FOLD_SPLITS: tuple[str, ...] = ("train", "val")

FrameRef = tuple[str, str]
"""``(split, file name)`` of one CamVid frame."""


@dataclass(frozen=True)
class Fold:
    """One leave-one-sequence-out fold: train on ``train``, evaluate on ``held_out`` frames."""

    held_out_sequence: str
    train: tuple[FrameRef, ...]
    held_out: tuple[FrameRef, ...]

    def describe(self) -> str:
        """One line for logs: which sequence is held out and how many frames each side has."""
        return (f"fold {self.held_out_sequence}: train {len(self.train)} frames, "
                f"held out {len(self.held_out)} frames")


def read_sequence_table(root: Path | str) -> dict[FrameRef, str]:
    """``(split, file) -> sequence`` for every row of ``root/sequences.tsv``.

    Raises:
        TrainingDataError: the table is missing or lacks the ``sequence``/``split``/``file`` columns.
    """
    table = Path(root) / "sequences.tsv"
    if not table.is_file():
        raise TrainingDataError(f"{table} not found: the folds need the CamVid sequence table")
    try:
        with table.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        return {(row["split"], row["file"]): row["sequence"] for row in rows}
    except (KeyError, csv.Error, OSError) as error:
        raise TrainingDataError(f"{table}: cannot read sequence/split/file columns ({error})") from error


def fold_for(root: Path | str, held_out_sequence: str,
             splits: Sequence[str] = FOLD_SPLITS) -> Fold:
    """The fold that holds out ``held_out_sequence``; frames sorted by (split, name).

    Raises:
        TrainingDataError: unknown sequence, or a side of the fold would be empty.
    """
    table = read_sequence_table(root)
    frames = sorted(ref for ref in table if ref[0] in splits)
    known = sorted({table[ref] for ref in frames})
    if held_out_sequence not in known:
        raise TrainingDataError(f"unknown sequence {held_out_sequence!r}; the table has {known}")
    held = tuple(ref for ref in frames if table[ref] == held_out_sequence)
    train = tuple(ref for ref in frames if table[ref] != held_out_sequence)
    if not train:
        raise TrainingDataError(f"holding out {held_out_sequence} leaves no training frame")
    return Fold(held_out_sequence, train, held)


def all_folds(root: Path | str, sequences: Sequence[str] = FOLD_SEQUENCES) -> list[Fold]:
    """The leave-one-sequence-out folds, one per sequence, in the order given."""
    return [fold_for(root, sequence) for sequence in sequences]


def all_frames(root: Path | str, splits: Sequence[str] = FOLD_SPLITS) -> tuple[FrameRef, ...]:
    """Every train+val frame (what the shipped models are trained on once the folds chose the recipe)."""
    return tuple(sorted(ref for ref in read_sequence_table(root) if ref[0] in splits))
