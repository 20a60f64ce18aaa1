"""CertSpec: one validation (errors name the parameter), masks equal to the mask builders', working size."""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.core.errors import CoreError
from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.core.masks_drs import drs_column_masks, drs_parameters_for_width
from demasked_ros.core.spec import CertSpec, parse_patch, resolve_working_size


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "both"}, "mode 'both'"),
    ({"mode": "detection", "scheme": "3-mask"}, "scheme '3-mask' is not valid in detection mode"),
    ({"patch": 1.5}, "patch fraction"),
    ({"patch": (0, 4)}, "at least 1x1"),
    ({"n_patches": 0}, "n_patches"),
    ({"mode": "detection", "scheme": "row", "n_patches": 2}, "n_patches > 1"),
    ({"band_width": 30}, "band_width applies to detection"),
    ({"mode": "detection", "k": 3, "band_width": 30}, "either k or band_width"),
    ({"k": 4}, "K must be >= 2*N*T+1 = 5"),
    ({"k": 8, "n_patches": 2}, "= 9"),
    ({"working_size": (0, 0)}, "working_size"),
    ({"interpolation": "cubic"}, "interpolation"),
])
def test_invalid_specs_name_the_parameter(kwargs, message):
    with pytest.raises(CoreError, match=message.replace("*", r"\*").replace("+", r"\+")):
        CertSpec(**kwargs)


@pytest.mark.parametrize("spec", [
    CertSpec("recovery", "3-mask", (20, 30)),
    CertSpec("recovery", "column", 0.01, n_patches=2, k=11),
    CertSpec("detection", "row", (10, 10), band_width=40),
    CertSpec("detection", "block", 0.02),
])
def test_masks_are_the_mask_builders_masks(spec):
    if spec.mode == "recovery":
        expected = recovery_masks(100, 130, spec.patch, spec.scheme, spec.n_patches, spec.k)
    else:
        expected = detection_masks(100, 130, spec.patch, spec.scheme, spec.k, spec.band_width)
    masks = spec.masks(100, 130)
    np.testing.assert_array_equal(masks.visible, expected.visible)
    assert (masks.k, masks.t, masks.patch) == (expected.k, expected.t, expected.patch)


def test_drs_masks_and_an_explicit_patch():
    band, stride = drs_parameters_for_width(130)
    drs = CertSpec("recovery", "drs-s", 0.01).masks(100, 130)
    np.testing.assert_array_equal(drs.visible, drs_column_masks(100, 130, 0.01, band, stride).visible)
    assert CertSpec(patch=0.5).masks(100, 130, patch=(7, 9)).patch == (7, 9)


def test_patch_text_working_size_and_summary():
    assert parse_patch("0.005") == 0.005 and parse_patch("30X40") == (30, 40)
    with pytest.raises(CoreError, match="fraction like"):
        parse_patch("big")
    assert resolve_working_size((48, 0), (96, 128)) == (48, 64)
    assert resolve_working_size((96, 128), (96, 128)) is None
    spec = CertSpec(patch=[10, 12], working_size=(0, 64))
    assert spec.patch == (10, 12) and spec.working_hw(96, 128) == (48, 64)
    with pytest.raises(CoreError, match="does not fit"):
        spec.check_frame(8, 8)
    assert spec.describe() == "mode=recovery scheme=column patch=(10, 12) k=auto working=autox64 (area)"
    with pytest.raises(AttributeError):
        spec.mode = "detection"  # immutable
