"""TorchPipeline.for_models: the attacks optimise the model the product certifies with, or refuse."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from demasked_ros.attacks.errors import AttackError
from demasked_ros.attacks.torch_models import TorchPipeline
from tests.attacks.tiny_torch import pipeline


def test_default_and_default_architecture_onnx_files_get_twins(tmp_path):
    pytest.importorskip("onnx", reason="twins of ONNX files need the onnx package")
    from demasked_ros.engines.torch_twins import DEMASKER_ONNX, SEGMENTER_ONNX

    copy = tmp_path / "mine.onnx"
    shutil.copyfile(SEGMENTER_ONNX, copy)
    pipe = TorchPipeline.for_models(str(copy), str(DEMASKER_ONNX))
    assert pipe.demasker is not None
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    default = TorchPipeline.default()
    assert np.array_equal(pipe.labels(image), default.labels(image))
    assert pipe.check_twin(image, default.labels(image)) == 1.0
    # PGD on f never runs the demasker: a classical inpainter is fine there, not for the adaptive attack
    assert TorchPipeline.for_models(str(copy), "telea", need_demasker=False).demasker is None
    with pytest.raises(AttackError, match="adaptive"):
        TorchPipeline.for_models(str(copy), "telea", need_demasker=True)


@pytest.mark.parametrize("segmenter", ["mine.pt", "my_pkg.models:segmenter", "mine.pt2"])
def test_models_without_a_twin_are_refused(segmenter):
    with pytest.raises(AttackError, match="torch twin"):
        TorchPipeline.for_models(segmenter, "default")


def test_an_onnx_file_of_another_architecture_is_refused():
    pytest.importorskip("onnx", reason="twins of ONNX files need the onnx package")
    from demasked_ros.engines.torch_twins import DEMASKER_ONNX

    with pytest.raises(AttackError, match="no torch twin"):
        TorchPipeline.for_models(str(DEMASKER_ONNX), "default")


def test_check_twin_refuses_a_twin_that_is_another_model():
    pipe = pipeline()
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    labels = pipe.labels(image)
    assert pipe.check_twin(image, labels) == 1.0
    with pytest.raises(AttackError, match="not the same model"):
        pipe.check_twin(image, (labels + 1) % 4)
