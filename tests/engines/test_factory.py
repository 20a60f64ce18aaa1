"""The one model factory: segmenter specs (default, ONNX, torch, plugin), demaskers, executors."""

from __future__ import annotations

import pytest

from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.factory import (
    DEFAULT_SEGMENTER_PATH,
    MODELS_DIR,
    SegmenterSpec,
    calibration_models,
    make_executor,
    make_segmenter,
)
from demasked_ros.engines.protocols import Segmenter
from tests.tiny_models import write_conv_model


def test_models_dir_holds_the_packaged_models():
    assert DEFAULT_SEGMENTER_PATH.parent == MODELS_DIR and DEFAULT_SEGMENTER_PATH.is_file()
    assert SegmenterSpec().model_path == DEFAULT_SEGMENTER_PATH


def test_plugin_and_file_segmenters(tmp_path):
    plugin = make_segmenter(SegmenterSpec(name="tests.apps.node.plugins:colour_segmenter"))
    assert isinstance(plugin, Segmenter) and SegmenterSpec("a.b:c").is_plugin
    path = write_conv_model(tmp_path / "m.onnx")
    onnx = make_segmenter(SegmenterSpec(name=str(path), class_names=("a", "b", "c", "d"), threads=1))
    assert list(onnx.class_names) == ["a", "b", "c", "d"]


@pytest.mark.parametrize(("name", "message"), [
    ("no_such_module:make", "no_such_module"),
    ("tests.apps.node.plugins:nothing_here", "nothing_here"),
    ("model.onnx", "class names are unknown"),
    ("weights.bin", "class names are unknown"),
])
def test_bad_segmenter_specs_are_engine_errors(name, message):
    with pytest.raises(EngineError, match=message):
        make_segmenter(SegmenterSpec(name=name))


def test_unknown_file_kinds_and_executors_are_refused():
    with pytest.raises(EngineError, match="unknown segmenter"):
        make_segmenter(SegmenterSpec(name="weights.bin", class_names=("a",)))
    with pytest.raises(EngineError, match="unknown executor"):
        make_executor("tpu")
    assert make_executor("cpu", 4) == (None, "cpu-chunked(chunk_size=4)")


def test_model_fingerprint_names_the_files_a_calibration_was_made_with(tmp_path):
    import hashlib

    from demasked_ros.engines.factory import DEFAULT_DEMASKER_PATH, DEFAULT_SEGMENTER_PATH, model_fingerprint

    def sha(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    default = model_fingerprint()
    assert default == {"segmenter": sha(DEFAULT_SEGMENTER_PATH), "demasker": sha(DEFAULT_DEMASKER_PATH)}
    assert model_fingerprint("", "learned") == default
    assert model_fingerprint("default", "telea") == {"segmenter": default["segmenter"], "demasker": "telea"}
    own = tmp_path / "mine.onnx"
    own.write_bytes(b"weights v1")
    first = model_fingerprint(str(own), "ns")
    assert first == {"segmenter": hashlib.sha256(b"weights v1").hexdigest(), "demasker": "ns"}
    own.write_bytes(b"weights v2, retrained")  # a new file under the same name is a new fingerprint
    assert model_fingerprint(str(own), "ns")["segmenter"] != first["segmenter"]
    assert model_fingerprint("my_pkg.models:build", "telea") == {"demasker": "telea"}  # a plugin: no file


@pytest.mark.parametrize(("segmenter", "demasker", "expected"), [
    ("default", "default", "default"), ("", "learned", "default"), ("default", "telea", "default+telea"),
    ("runs/fold/r3/segmenter.onnx", "default", "segmenter+default"), ("mine.pt2", "ns", "mine+ns"),
    ("my_pkg.models:segmenter", "default", "my_pkg.models:segmenter+default"),
])
def test_calibration_models_is_the_one_models_part_of_a_calibration_key(segmenter, demasker, expected):
    assert calibration_models(segmenter, demasker) == expected
