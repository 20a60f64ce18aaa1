"""The packaged default models load with onnxruntime alone and plug into the Certifier."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from demasked_ros.core.classes import CAMVID
from demasked_ros.core.masks import recovery_masks
from demasked_ros.engines import defaults
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.demaskers import TeleaDemasker
from demasked_ros.engines.errors import EngineError

CAMVID_ROOT = Path(os.environ.get(
    "DEMASKED_CAMVID", Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"))


@pytest.fixture(scope="module")
def segmenter():
    return defaults.default_segmenter(threads=1)


def street_like_frame() -> np.ndarray:
    """A synthetic 360x480 frame: grey sky, dark road, textured middle (no data needed)."""
    rng = np.random.default_rng(0)
    frame = np.empty((360, 480, 3), np.uint8)
    frame[:120] = (170, 180, 190)
    frame[120:240] = rng.integers(40, 160, (120, 480, 3))
    frame[240:] = (80, 70, 85)
    return frame


def test_packaged_model_is_small_and_declares_camvid():
    assert defaults.DEFAULT_SEGMENTER_PATH.is_file()
    assert defaults.DEFAULT_SEGMENTER_PATH.stat().st_size <= 10 * 1024 * 1024
    assert defaults.default_class_info() is CAMVID


def test_default_segmenter_is_deterministic_with_camvid_classes(segmenter):
    assert list(segmenter.class_names) == list(CAMVID.names) and len(segmenter.class_names) == 11
    frame = street_like_frame()[None]
    first, second = segmenter.segment(frame), segmenter.segment(frame.copy())
    assert first.shape == (1, 360, 480)
    assert first.min() >= 0 and first.max() < 11
    np.testing.assert_array_equal(first, second)
    assert segmenter.providers == ["CPUExecutionProvider"]


def test_default_segmenter_rejects_unavailable_providers():
    with pytest.raises(EngineError):
        defaults.default_segmenter(providers=("vulkan",))


@pytest.mark.camvid
@pytest.mark.skipif(not (CAMVID_ROOT / "val").is_dir(), reason=f"CamVid not found at {CAMVID_ROOT}")
def test_default_segmenter_is_trained_on_camvid(segmenter):
    name = "0016E5_07959.png"
    image = cv2.cvtColor(cv2.imread(str(CAMVID_ROOT / "val" / name)), cv2.COLOR_BGR2RGB)
    truth = cv2.imread(str(CAMVID_ROOT / "valannot" / name), cv2.IMREAD_UNCHANGED)
    labels = segmenter.segment(image[None])[0]
    valid = truth != CAMVID.ignore_index
    accuracy = float((labels[valid] == truth[valid]).mean())
    assert accuracy > 0.75, f"pixel accuracy {accuracy:.2f} on a val frame: the packaged model is not trained"


def test_default_models_work_with_the_certifier(segmenter):
    masks = recovery_masks(360, 480, 0.005, "column")
    result = Certifier(segmenter, defaults.default_demasker(threads=1), masks).certify(street_like_frame())
    assert result.labels.shape == (360, 480)
    assert result.branch_labels.shape == (masks.k, 360, 480)
    assert 0.0 <= result.certified_fraction <= 1.0


def test_default_demasker_falls_back_to_telea_without_weights(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(defaults, "MODELS_DIR", tmp_path)
    demasker = defaults.default_demasker()
    assert isinstance(demasker, TeleaDemasker)
    assert "falling back to OpenCV TELEA" in caplog.text
