"""Architecture of the default segmenter: shapes, size budget, export-relevant behaviour."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training tests need torch (requirements/train.txt)")

from demasked_ros.training.segmenter_model import (  # noqa: E402
    IMAGE_MEAN,
    IMAGE_STD,
    CompactSegNet,
    FullResolutionSegNet,
    count_parameters,
    normalize,
)
from demasked_ros.training.segmenter_train import (  # noqa: E402
    confusion_matrix,
    iou_from_confusion,
    poly_lr,
)


def test_trunk_returns_logits_at_its_input_size_for_odd_sizes():
    net = CompactSegNet(num_classes=11).eval()
    with torch.no_grad():
        out = net(torch.zeros(2, 3, 45, 61))
    assert out.shape == (2, 11, 45, 61)


def test_full_resolution_wrapper_runs_trunk_at_half_resolution_and_returns_full_size():
    net = CompactSegNet(num_classes=11).eval()
    seen: list[tuple[int, ...]] = []
    net.stage1.register_forward_hook(lambda _m, args, _out: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        out = FullResolutionSegNet(net, downscale=2)(torch.zeros(1, 3, 360, 480))
    assert out.shape == (1, 11, 360, 480)
    assert seen == [(1, 3, 180, 240)]


def test_default_architecture_is_well_under_the_parameter_budget():
    params = count_parameters(CompactSegNet(num_classes=11))
    assert 100_000 < params < 5_000_000


def test_normalize_maps_the_mean_colour_to_zero_and_mean_plus_std_to_one():
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    assert torch.allclose(normalize(mean), torch.zeros(1, 3, 2, 2), atol=1e-5)
    assert torch.allclose(normalize(mean + std), torch.ones(1, 3, 2, 2), atol=1e-5)


def test_poly_schedule_warms_up_peaks_and_decays_to_zero():
    assert poly_lr(1.0, 0, 100, 10) == pytest.approx(0.1)
    assert poly_lr(1.0, 10, 100, 10) == pytest.approx(1.0)
    assert 0.0 < poly_lr(1.0, 50, 100, 10) < 1.0
    assert poly_lr(1.0, 100, 100, 10) == pytest.approx(0.0)


def test_confusion_and_iou_ignore_void_and_count_by_hand():
    truth = np.array([[0, 0, 1, 11]])
    pred = np.array([[0, 1, 1, 0]])
    conf = confusion_matrix(pred, truth, 2)
    assert conf.tolist() == [[1, 1], [0, 1]]
    iou = iou_from_confusion(conf)
    assert iou[0] == pytest.approx(1 / 2)
    assert iou[1] == pytest.approx(1 / 2)
