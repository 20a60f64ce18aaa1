"""Leave-one-sequence-out folds: disjoint, complete, driven by sequences.tsv."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from demasked_ros.training.data import TrainingDataError
from demasked_ros.training.folds import FOLD_SEQUENCES, all_folds, all_frames, fold_for

CAMVID = Path(os.environ.get(
    "DEMASKED_CAMVID", Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"))


def write_table(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = ["sequence\tframe_index_30fps\tsplit\tfile"]
    lines += [f"{seq}\t{i}\t{split}\t{name}" for i, (seq, split, name) in enumerate(rows)]
    (root / "sequences.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_each_fold_holds_out_exactly_one_sequence_across_splits(tmp_path):
    root = write_table(tmp_path, [("A", "train", "a1.png"), ("A", "val", "a2.png"), ("B", "train", "b1.png"),
                                  ("C", "train", "c1.png"), ("C", "test", "c9.png")])
    fold = fold_for(root, "A")
    assert fold.held_out == (("train", "a1.png"), ("val", "a2.png"))  # val frames of A are held out too
    assert fold.train == (("train", "b1.png"), ("train", "c1.png"))  # test split never used
    assert "held out 2" in fold.describe()
    assert all_frames(root) == tuple(sorted(fold.train + fold.held_out))


def test_unknown_sequence_and_missing_table_are_errors(tmp_path):
    root = write_table(tmp_path / "d", [("A", "train", "a.png"), ("B", "train", "b.png")])
    with pytest.raises(TrainingDataError, match="unknown sequence"):
        fold_for(root, "Z")
    with pytest.raises(TrainingDataError, match="not found"):
        fold_for(tmp_path / "nowhere", "A")
    lone = write_table(tmp_path / "e", [("A", "train", "a.png")])
    with pytest.raises(TrainingDataError, match="no training frame"):
        fold_for(lone, "A")


@pytest.mark.camvid
@pytest.mark.skipif(not (CAMVID / "sequences.tsv").is_file(), reason=f"CamVid not found at {CAMVID}")
def test_camvid_folds_partition_train_and_val():
    folds = all_folds(CAMVID)
    assert [f.held_out_sequence for f in folds] == list(FOLD_SEQUENCES)
    assert [len(f.held_out) for f in folds] == [62, 101, 305]
    everything = set(all_frames(CAMVID))
    assert len(everything) == 468
    held = [set(f.held_out) for f in folds]
    assert set().union(*held) == everything and sum(map(len, held)) == 468  # disjoint and complete
    for fold in folds:
        assert set(fold.train) == everything - set(fold.held_out)
        assert all((CAMVID / split / name).is_file() for split, name in fold.held_out)
