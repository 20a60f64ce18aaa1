"""Issue 11: a spec never labels masks for N patches that were built for one."""

import pytest

from demasked_ros.core.errors import CoreError
from demasked_ros.core.spec import CertSpec


@pytest.mark.parametrize("scheme", ["drs-s", "drs-e"])
def test_drs_with_several_patches_is_refused(scheme):
    with pytest.raises(CoreError, match="n_patches > 1 is not supported"):
        CertSpec(mode="recovery", scheme=scheme, patch=0.02, n_patches=2)
    assert CertSpec(mode="recovery", scheme=scheme, patch=0.02).masks(48, 64).n_patches == 1


def test_detection_with_several_patches_is_refused_and_recovery_builds_them():
    with pytest.raises(CoreError, match="recovery mode"):
        CertSpec(mode="detection", scheme="column", patch=0.02, n_patches=2)
    masks = CertSpec(mode="recovery", scheme="column", patch=0.02, n_patches=2).masks(48, 64)
    assert masks.n_patches == 2 and masks.k >= 2 * 2 * masks.t + 1


def test_the_evaluator_refuses_drs_with_several_patches():
    from demasked_ros.apps.evaluate.config import EvalConfig, EvaluationError

    with pytest.raises(EvaluationError, match="n_patches > 1 is not supported"):
        EvalConfig("recovery", "drs-s", 0.02, demasker="solid", segmenter="rule", n_patches=2)
