"""Per-pixel aggregation of the K branch segmentations (paper, section 4.2, Algorithm 1).

* Recovery: majority vote over the branches, ties broken towards the smaller class index;
  a pixel is certified where all K branches agree (Theorem 1, valid for K >= 2*N*T + 1).
* Detection: the output is the plain segmentation f(x); a pixel is verified where every branch
  equals f(x) (Theorem 2). Unverified pixels raise an alert.
"""

from __future__ import annotations

import numpy as np

from demasked_ros.core.errors import CoreError


def recover(branch_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority vote and unanimity certificate over ``K x H x W`` integer branch labels.

    Returns ``(labels, certified)``: ``labels`` (H x W, the input dtype) holds the class predicted
    by most branches, the smaller class index winning a tie; ``certified`` (bool H x W) is True
    where all K branches agree.
    """
    labels = _check_branches(branch_labels)
    k = labels.shape[0]
    first = labels[0]
    certified = np.all(labels == first[None], axis=0)
    voted = first.copy()
    if k == 1 or certified.all():
        return voted, certified
    # Vote only where the branches disagree (usually a minority of the pixels).
    winner, _, _ = _contested_vote(labels[:, ~certified])
    voted[~certified] = winner
    return voted, certified


def recover_with_margin(branch_labels: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority vote certified where it wins by more than ``2 * t`` votes.

    ``t`` is the most branches an attacker can change (N patches x T masks each). Changing ``t``
    votes moves the margin by at most ``2 t``, so a larger margin cannot be overturned. With
    ``K = 2t + 1`` this is exactly unanimity (:func:`recover`); with more masks it certifies
    pixels that a few branches dispute, e.g. for column smoothing (DRS).
    """
    labels = _check_branches(branch_labels)
    if t < 0:
        raise CoreError(f"t must be >= 0, got {t}")
    k = labels.shape[0]
    first = labels[0]
    unanimous = np.all(labels == first[None], axis=0)
    voted = first.copy()
    certified = unanimous & (k > 2 * t)
    if unanimous.all():
        return voted, certified
    contested = labels[:, ~unanimous]
    winner, top, runner_up = _contested_vote(contested)
    voted[~unanimous] = winner
    certified[~unanimous] = top - runner_up > 2 * t
    return voted, certified


def detect(f_labels: np.ndarray, branch_labels: np.ndarray) -> np.ndarray:
    """Verification map: True where every branch label equals the plain segmentation ``f_labels``."""
    labels = _check_branches(branch_labels)
    if f_labels.shape != labels.shape[1:]:
        raise CoreError(f"f(x) has shape {f_labels.shape}, branches have {labels.shape[1:]}")
    _check_integer(f_labels, "f(x) labels")
    return np.all(labels == f_labels[None], axis=0)


def _contested_vote(contested: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vote over ``K x P`` labels: (winning label, its vote count, best other class's count) per pixel.

    The winner has the most votes, the smaller class index breaking ties.
    """
    k = contested.shape[0]
    # counts[j] = branches agreeing with branch j (K^2 comparisons; K is small).
    counts = np.ones(contested.shape, dtype=np.int32)
    for i in range(k):
        for j in range(i + 1, k):
            same = contested[i] == contested[j]
            counts[i] += same
            counts[j] += same
    # Rank branches by (count desc, label asc): the first-ranked branch carries the winning class.
    low = int(contested.min())
    span = int(contested.max()) - low + 1
    key = counts.astype(np.int64) * span - (contested.astype(np.int64) - low)
    best = np.argmax(key, axis=0)[None]
    winner = np.take_along_axis(contested, best, axis=0)[0]
    top = np.take_along_axis(counts, best, axis=0)[0]
    runner_up = np.where(contested != winner[None], counts, 0).max(axis=0)
    return winner, top, runner_up


def _check_branches(branch_labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(branch_labels)
    if labels.ndim != 3 or labels.shape[0] < 1 or labels.shape[1] < 1 or labels.shape[2] < 1:
        raise CoreError(f"branch labels must be K x H x W with K >= 1, got shape {labels.shape}")
    _check_integer(labels, "branch labels")
    return labels


def _check_integer(labels: np.ndarray, what: str) -> None:
    if not np.issubdtype(labels.dtype, np.integer):
        raise CoreError(f"{what} must be integer class indices, got dtype {labels.dtype}")
