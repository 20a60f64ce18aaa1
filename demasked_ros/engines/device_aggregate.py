"""Algorithm 1's aggregation on the device (torch), bit-identical to :mod:`demasked_ros.core.certify`.

Why a torch twin of core's numpy code: on a GPU the K branch labels never leave the device; the
vote, the margin certificate and detection's verification run there, and only the results travel
to the host, in one copy. The rules are core's, restated without boolean indexing (which would
synchronise with the host) and checked against core by property tests
(``tests/engines/test_device_aggregate.py``):

* recovery: the winner has the most votes, the smaller class index breaking ties; a pixel is
  certified where the winner leads the best other class by more than ``2 t`` votes (unanimous
  pixels: where ``K > 2 t``);
* detection: verified where every branch equals f(x).
"""

from __future__ import annotations

import torch


def recover_with_margin(branch_labels: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Majority vote (H x W, the input dtype) and margin certificate (H x W bool) over K x H x W labels.

    Same results as :func:`demasked_ros.core.certify.recover_with_margin` for labels >= 0.
    """
    if branch_labels.ndim != 3 or branch_labels.shape[0] < 1:
        raise ValueError(f"branch labels must be K x H x W with K >= 1, got {tuple(branch_labels.shape)}")
    if t < 0:
        raise ValueError(f"t must be >= 0, got {t}")
    k = branch_labels.shape[0]
    first = branch_labels[0]
    unanimous = (branch_labels == first).all(dim=0)
    if k == 1:
        return first.clone(), unanimous & (k > 2 * t)
    # counts[j] = branches agreeing with branch j (K^2 comparisons, as in core; K is small).
    counts = torch.ones(branch_labels.shape, dtype=torch.int32, device=branch_labels.device)
    for i in range(k):
        for j in range(i + 1, k):
            same = (branch_labels[i] == branch_labels[j]).to(torch.int32)
            counts[i] += same
            counts[j] += same
    # Rank branches by (count desc, label asc); tied keys carry the same label and count.
    labels64 = branch_labels.to(torch.int64)
    span = labels64.max() - labels64.min() + 1
    key = counts.to(torch.int64) * span - labels64
    best = key.argmax(dim=0, keepdim=True)
    winner = branch_labels.gather(0, best)[0]
    top = counts.gather(0, best)[0]
    runner_up = torch.where(branch_labels != winner, counts, torch.zeros_like(counts)).amax(dim=0)
    labels = torch.where(unanimous, first, winner)
    certified = torch.where(unanimous, torch.full_like(unanimous, k > 2 * t), (top - runner_up) > 2 * t)
    return labels, certified


def detect(f_labels: torch.Tensor, branch_labels: torch.Tensor) -> torch.Tensor:
    """Verification map (H x W bool): every branch label equals f(x)."""
    if branch_labels.ndim != 3 or tuple(f_labels.shape) != tuple(branch_labels.shape[1:]):
        raise ValueError(f"f(x) {tuple(f_labels.shape)} does not match branches {tuple(branch_labels.shape)}")
    return (branch_labels == f_labels).all(dim=0)


def out_of_range(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """0-d bool tensor on the device: some label lies outside ``0 .. num_classes - 1``."""
    return (labels.amin() < 0) | (labels.amax() >= num_classes)
