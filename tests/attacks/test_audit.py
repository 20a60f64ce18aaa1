"""The audit: violation definitions, a sound certifier passes, a leaky one is caught; adaptive attacks."""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.attacks.adaptive import detection_objective, recovery_objective
from demasked_ros.attacks.audit import Recertifier, audit, violation_map
from demasked_ros.attacks.baselines import noise_contents
from demasked_ros.attacks.pgd import PGDConfig, attacked_frame, optimise_patch
from demasked_ros.attacks.placement import Placement, grid_placements, paste, worst_of
from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.engines.certifier import Certifier
from tests.attacks.tiny_torch import LeakyDemasker, ProductDemasker, pipeline, product_segmenter, scene

H, W = 40, 60


class LeakyCertifier(Certifier):
    """A deliberately unsound certifier: its demasker reads the unmasked frame."""

    def certify(self, image, **kwargs):
        self.demasker.frame = image
        return super().certify(image, **kwargs)


def _certifiers(mode: str):
    pipe = pipeline()
    masks = recovery_masks(H, W, (8, 8), "column") if mode == "recovery" else \
        detection_masks(H, W, (8, 8), "column")
    sound = Certifier(product_segmenter(pipe), ProductDemasker(pipe), masks)
    leaky = LeakyCertifier(product_segmenter(pipe), LeakyDemasker(), masks)
    return pipe, masks, sound, leaky


def test_violation_definitions():
    clean = np.array([[0, 1, 2, 3]])
    attacked = np.array([[0, 2, 2, 0]])
    certified_clean = np.array([[True, True, False, True]])
    certified_attacked = np.array([[True, False, True, True]])
    assert violation_map("recovery", clean, certified_clean, attacked, certified_attacked).tolist() == \
        [[False, True, False, True]]
    assert violation_map("detection", clean, certified_clean, attacked, certified_attacked).tolist() == \
        [[False, False, False, True]]


@pytest.mark.parametrize("mode", ["recovery", "detection"])
def test_sound_certifier_has_no_violations_and_leaky_one_is_flagged(mode):
    _, masks, sound, leaky = _certifiers(mode)
    image = scene()
    rng = np.random.default_rng(0)
    placements = grid_placements(H, W, masks.patch, stride=8)
    totals = {"sound": 0, "leaky": 0}
    for name, certifier in (("sound", sound), ("leaky", leaky)):
        clean = certifier.certify(image)
        for placement in placements:
            attacked = certifier.certify(paste(image, placement, noise_contents(rng, placement)))
            totals[name] += audit(clean, attacked).violations
    assert totals["sound"] == 0
    assert totals["leaky"] > 0  # the leaky demasker lets the patch reach every branch


@pytest.mark.parametrize("mode", ["recovery", "detection"])
def test_incremental_recertification_equals_the_full_one(mode):
    _, masks, sound, _ = _certifiers(mode)
    recertifier = Recertifier(sound)
    image = scene(seed=2)
    clean = recertifier.full(image)
    rng = np.random.default_rng(1)
    for placement in grid_placements(H, W, masks.patch, stride=13):
        attacked = paste(image, placement, noise_contents(rng, placement))
        full = recertifier.full(attacked)
        fast, rerun = recertifier.changed(image, clean, attacked)
        assert rerun < masks.k or mode == "detection"
        np.testing.assert_array_equal(fast.labels, full.labels)
        np.testing.assert_array_equal(fast.certified, full.certified)
        np.testing.assert_array_equal(fast.branch_labels, full.branch_labels)


def _grown(placement: Placement) -> np.ndarray:
    y, x, h, w = placement.boxes[0]
    region = np.zeros((H, W), dtype=bool)
    region[max(0, y - 4):y + h + 4, max(0, x - 4):x + w + 4] = True
    return region


@pytest.mark.parametrize("mode", ["recovery", "detection"])
def test_adaptive_attack_lowers_its_loss_stays_in_the_patch_and_breaks_nothing(mode):
    pipe, masks, sound, _ = _certifiers(mode)
    image = scene(seed=4)
    clean = sound.certify(image)
    # Attack where the clean output is most certified (the recovery objective needs certified pixels
    # within the reach of the patch: receptive field 5x5 plus the 7x7 fill).
    placement, _ = worst_of(grid_placements(H, W, masks.patch, stride=4),
                            lambda p: float(clean.certified[_grown(p)].sum()))
    if mode == "recovery":
        objective = recovery_objective(pipe, masks, placement, image, clean.labels, clean.certified)
    else:
        objective = detection_objective(pipe, masks, placement, image, clean.labels, clean.branch_labels,
                                        branch_sample=2)
    result = optimise_patch(pipe, image, placement, objective, PGDConfig(steps=25, seed=3))
    assert result.loss < result.history[0]
    attacked = attacked_frame(image, placement, result)
    assert not ((attacked != image).any(axis=2) & ~placement.region(H, W)).any()
    counts = audit(clean, sound.certify(attacked))
    assert counts.violations == 0
    assert counts.changed > 0  # the attack did change the output somewhere (not certified there)
