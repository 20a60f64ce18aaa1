"""Device aggregation is bit-identical to core.certify (random property checks, tie-heavy cases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from demasked_ros.core import certify
from demasked_ros.engines import device_aggregate
from tests.engines.gpu_devices import DEVICES


def random_branches(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    k = int(rng.integers(1, 12))
    classes = int(rng.choice([1, 2, 3, 11, 40]))
    height, width = (int(v) for v in rng.integers(1, 24, size=2))
    # Mostly agreeing branches with a few dissenters, or fully random votes (many ties).
    base = rng.integers(0, classes, size=(height, width))
    labels = np.repeat(base[None], k, axis=0)
    flips = rng.random(labels.shape) < rng.choice([0.0, 0.2, 0.5, 1.0])
    labels[flips] = rng.integers(0, classes, size=int(flips.sum()))
    return labels.astype(np.int32 if rng.random() < 0.5 else np.int64), classes


@pytest.mark.parametrize("device", DEVICES)
def test_recovery_vote_and_margin_match_core_bit_for_bit(device):
    rng = np.random.default_rng(0)
    for _ in range(300):
        labels, _ = random_branches(rng)
        k = labels.shape[0]
        for t in sorted({0, 1, 2, (k - 1) // 2, k}):
            expected = certify.recover_with_margin(labels, t)
            got = device_aggregate.recover_with_margin(torch.from_numpy(labels).to(device), t)
            np.testing.assert_array_equal(got[0].cpu().numpy(), expected[0])
            np.testing.assert_array_equal(got[1].cpu().numpy(), expected[1])
            assert got[0].dtype == torch.from_numpy(labels).dtype and got[1].dtype == torch.bool


@pytest.mark.parametrize("device", DEVICES)
def test_detection_matches_core_and_range_check_flags_bad_labels(device):
    rng = np.random.default_rng(1)
    for _ in range(200):
        labels, classes = random_branches(rng)
        plain = labels[int(rng.integers(0, labels.shape[0]))].copy()
        if rng.random() < 0.5:
            plain[rng.random(plain.shape) < 0.3] = 0
        got = device_aggregate.detect(torch.from_numpy(plain).to(device), torch.from_numpy(labels).to(device))
        np.testing.assert_array_equal(got.cpu().numpy(), certify.detect(plain, labels))
        tensor = torch.from_numpy(labels).to(device)
        assert not bool(device_aggregate.out_of_range(tensor, classes))
        assert bool(device_aggregate.out_of_range(tensor, int(labels.max())))
        assert bool(device_aggregate.out_of_range(tensor - (int(labels.min()) + 1), classes))


def test_tie_breaks_towards_the_smaller_class_and_margin_is_strict():
    labels = torch.tensor([[[3]], [[1]], [[3]], [[1]], [[2]]], dtype=torch.int32)
    voted, certified = device_aggregate.recover_with_margin(labels, 0)
    assert int(voted) == 1 and not bool(certified)  # 2 vs 2: tie, margin 0 is not > 0
    labels = torch.tensor([[[4]], [[4]], [[4]], [[0]], [[2]]], dtype=torch.int32)
    voted, certified = device_aggregate.recover_with_margin(labels, 0)
    assert int(voted) == 4 and bool(certified)  # 3 vs 1 > 0
    assert not bool(device_aggregate.recover_with_margin(labels, 1)[1])  # 3 - 1 = 2 is not > 2
