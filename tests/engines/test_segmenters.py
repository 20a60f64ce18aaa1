import numpy as np
import pytest

from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.segmenters import CallableSegmenter, OnnxSegmenter
from tests.tiny_models import CLASS_NAMES, write_conv_model


def batch(seed=0, height=24, width=32, b=2):
    return np.random.default_rng(seed).integers(0, 256, size=(b, height, width, 3), dtype=np.uint8)




def test_onnx_segmenter_labels_at_input_resolution_and_deterministic(tmp_path):
    model = write_conv_model(tmp_path / "m.onnx")
    seg = OnnxSegmenter(model, CLASS_NAMES, intra_op_threads=1)
    images = batch()
    first, second = seg.segment(images), seg.segment(images)
    assert first.shape == (2, 24, 32)
    assert first.min() >= 0 and first.max() < 4
    np.testing.assert_array_equal(first, second)
    assert seg.providers == ["CPUExecutionProvider"]
    assert OnnxSegmenter(model, CLASS_NAMES, providers=("cpu",)).providers == ["CPUExecutionProvider"]


def test_onnx_segmenter_normalisation_and_channel_order_matter(tmp_path):
    model = write_conv_model(tmp_path / "m.onnx")
    images = batch(seed=1)
    rgb = OnnxSegmenter(model, CLASS_NAMES).segment(images)
    bgr = OnnxSegmenter(model, CLASS_NAMES, channel_order="BGR").segment(images[..., ::-1].copy())
    np.testing.assert_array_equal(rgb, bgr)
    shifted = OnnxSegmenter(model, CLASS_NAMES, mean=(0, 0, 0), std=(1, 1, 1)).segment(images)
    assert (shifted != rgb).any()


def test_onnx_segmenter_resizes_inside_after_demasking(tmp_path):
    """The batch it is given (already demasked) is resized to the model size, run, and the logits
    are resized back: compared with that pipeline written out here with cv2 and onnxruntime."""
    import cv2
    import onnxruntime as ort

    from demasked_ros.engines.segmenters import IMAGENET_MEAN, IMAGENET_STD

    model = write_conv_model(tmp_path / "m.onnx")
    seg = OnnxSegmenter(model, CLASS_NAMES, input_size=(12, 16))
    images = batch(seed=3, height=24, width=32)
    labels = seg.segment(images)
    assert labels.shape == (2, 24, 32)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for image, got in zip(images, labels, strict=True):
        small = cv2.resize(image, (16, 12), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        tensor = ((small - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)).transpose(2, 0, 1)[None]
        (logits,) = session.run(None, {"image": np.ascontiguousarray(tensor, dtype=np.float32)})
        assert logits.shape == (1, 4, 12, 16)  # the model really ran at the small size
        big = cv2.resize(logits[0].transpose(1, 2, 0), (32, 24), interpolation=cv2.INTER_LINEAR)
        expected = big.argmax(axis=2)
        np.testing.assert_array_equal(got, expected)
    at_full_size = OnnxSegmenter(model, CLASS_NAMES).segment(images)
    assert (at_full_size != labels).any()  # the resize is not a no-op


@pytest.mark.parametrize("stride", [1, 2])
def test_onnx_segmenter_accepts_label_outputs_and_low_res_logits(tmp_path, stride):
    logits = OnnxSegmenter(write_conv_model(tmp_path / "l.onnx", stride=stride), CLASS_NAMES)
    labels = OnnxSegmenter(write_conv_model(tmp_path / "a.onnx", output="labels", stride=stride),
                           CLASS_NAMES)
    images = batch(seed=2)
    assert logits.segment(images).shape == labels.segment(images).shape == (2, 24, 32)
    if stride == 1:
        np.testing.assert_array_equal(logits.segment(images), labels.segment(images))


def test_onnx_segmenter_errors_are_clear(tmp_path):
    with pytest.raises(EngineError, match="not found"):
        OnnxSegmenter(tmp_path / "missing.onnx", CLASS_NAMES)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(EngineError, match="cannot load"):
        OnnxSegmenter(tmp_path / "junk.onnx", CLASS_NAMES)
    model = write_conv_model(tmp_path / "m.onnx")
    with pytest.raises(EngineError, match="classes"):
        OnnxSegmenter(model, ["a", "b"]).segment(batch())
    with pytest.raises(EngineError, match="CUDAExecutionProvider"):
        OnnxSegmenter(model, CLASS_NAMES, providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    with pytest.raises(EngineError, match="channel_order"):
        OnnxSegmenter(model, CLASS_NAMES, channel_order="GRB")
    with pytest.raises(EngineError, match="uint8"):
        OnnxSegmenter(model, CLASS_NAMES).segment(batch().astype(np.float32))


def test_callable_segmenter_validates():
    seg = CallableSegmenter(lambda x: np.zeros(x.shape[:3], np.int64), ["only"])
    assert seg.segment(batch()).shape == (2, 24, 32)
    with pytest.raises(EngineError):
        CallableSegmenter(lambda x: x, [])
