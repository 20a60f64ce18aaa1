"""Rule 3 made testable: the ONNX Runtime sessions the engines build are pinned and sequential.

Fixed intra-op threads, one inter-op thread, sequential execution and deterministic kernels are
read back from the sessions themselves (``session.get_session_options()``), not from our code.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest

from demasked_ros.engines import defaults
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.learned_demasker import LearnedDemasker, default_learned_demasker
from demasked_ros.engines.segmenters import OnnxSegmenter
from tests.tiny_models import CLASS_NAMES, write_conv_model


def assert_pinned(session: ort.InferenceSession, threads: int) -> None:
    options = session.get_session_options()
    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.use_deterministic_compute
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize("threads", [1, 3])
def test_onnx_segmenter_session_is_pinned(tmp_path, threads):
    segmenter = OnnxSegmenter(write_conv_model(tmp_path / "m.onnx"), CLASS_NAMES, intra_op_threads=threads)
    assert_pinned(segmenter.session, threads)


def test_onnx_segmenter_refuses_an_unpinned_thread_count(tmp_path):
    with pytest.raises(EngineError, match="intra_op_threads"):
        OnnxSegmenter(write_conv_model(tmp_path / "m.onnx"), CLASS_NAMES, intra_op_threads=0)


@pytest.mark.parametrize("threads", [1, 2])
def test_learned_demasker_session_is_pinned(threads):
    assert_pinned(default_learned_demasker(threads=threads).session, threads)
    with pytest.raises(EngineError, match="threads"):
        LearnedDemasker(threads=0)


def test_default_models_sessions_are_pinned():
    assert_pinned(defaults.default_segmenter(threads=2).session, 2)
    demasker = defaults.default_demasker(threads=1)
    assert isinstance(demasker, LearnedDemasker)
    assert_pinned(demasker.session, 1)
