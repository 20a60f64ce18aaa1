"""PGD respects the threat model and lowers a tiny undefended model's accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.attacks.baselines import natural_contents, noise_contents
from demasked_ros.attacks.errors import AttackError
from demasked_ros.attacks.pgd import (
    PGDConfig,
    attacked_frame,
    erase_class,
    optimise_patch,
    paint_class,
    untargeted,
)
from demasked_ros.attacks.placement import Placement, paste
from tests.attacks.tiny_torch import pipeline, scene

PLACEMENT = Placement(((14, 20, 10, 10),))


def _accuracy(pipe, image, truth):
    return float((pipe.labels(image) == truth).mean())


def test_untargeted_pgd_stays_inside_the_patch_and_beats_noise():
    pipe, image = pipeline(), scene()
    clean = pipe.labels(image)
    result = optimise_patch(pipe, image, PLACEMENT, untargeted(pipe, clean), PGDConfig(steps=40, seed=1))
    attacked = attacked_frame(image, PLACEMENT, result)
    changed = (attacked != image).any(axis=2)
    assert changed.any() and not (changed & ~PLACEMENT.region(*image.shape[:2])).any()
    noisy = paste(image, PLACEMENT, noise_contents(np.random.default_rng(0), PLACEMENT))
    attacked_accuracy = _accuracy(pipe, attacked, clean)
    assert attacked_accuracy < _accuracy(pipe, noisy, clean) - 0.02
    assert attacked_accuracy < 0.95  # the receptive field caps the reach at (10 + 4)^2 px = 8 %
    assert len(result.history) == 40 and result.history[-1] < result.history[0]


def test_targeted_variants_move_pixels_to_and_from_the_class():
    pipe, image = pipeline(), scene(seed=3)
    clean = pipe.labels(image)
    cls = int(np.bincount(clean.ravel()).argmax())
    config = PGDConfig(steps=30, restarts=2)
    erased = attacked_frame(image, PLACEMENT, optimise_patch(pipe, image, PLACEMENT,
                                                             erase_class(pipe, clean, cls), config))
    assert (pipe.labels(erased) == cls).sum() < (clean == cls).sum()
    other = (cls + 1) % 4
    painted = attacked_frame(image, PLACEMENT, optimise_patch(pipe, image, PLACEMENT,
                                                              paint_class(pipe, clean, other), config))
    assert (pipe.labels(painted) == other).sum() > (clean == other).sum()


def test_config_defaults_and_schedules():
    config = PGDConfig()
    assert config.steps >= 100
    assert config.step(0) == pytest.approx(config.step_size)
    assert config.step(config.steps - 1) == pytest.approx(config.final_step_size)
    steps = [PGDConfig(steps=8, schedule="step").step(t) for t in range(8)]
    assert steps == sorted(steps, reverse=True) and steps[0] > steps[-1]
    with pytest.raises(AttackError):
        PGDConfig(schedule="linear")


def test_natural_patches_come_from_donor_frames():
    donor = scene(seed=9)
    (content,) = natural_contents(np.random.default_rng(0), PLACEMENT, [donor])
    windows = np.lib.stride_tricks.sliding_window_view(donor, (10, 10, 3))[..., :, :, :]
    assert (windows == content).all(axis=(-3, -2, -1)).any()
