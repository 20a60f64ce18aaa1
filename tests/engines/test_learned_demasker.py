"""LearnedDemasker: isolation from masked pixels, copy-through, padding, determinism, fail-closed.

Most tests use tiny hand-built ONNX graphs that deliberately read *every* pixel (so they would leak
masked values if the engine did not zero them); the shipped model is tested where it exists.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.demaskers import TeleaDemasker
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.learned_demasker import (
    DEFAULT_DEMASKER_PATH,
    LearnedDemasker,
    default_learned_demasker,
)
from demasked_ros.engines.protocols import Demasker
from tests.tiny_models import colour_segmenter

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _node(op, inputs, output, **attributes):
    return helper.make_node(op, inputs, [output], **attributes)


def _constant(name, value):
    return _node("Constant", [], name, value=helper.make_tensor(name + "_t", TensorProto.FLOAT, [], [value]))


def write_graph(path: Path, kind: str = "leaky", input_names=("image", "visible")) -> Path:
    """A fake demasker graph. ``leaky``: 0.5 * pixel + 0.5 * image mean (reads all pixels);
    ``nan``: 0 / 0; ``shape``: the per-image mean only (wrong output shape)."""
    image, visible = input_names
    nodes = [_constant("half", 0.5), _constant("zero", 0.0),
             _node("ReduceMean", [image], "mean", axes=[2, 3], keepdims=1),
             _node("Mul", [visible, "zero"], "unused")]
    if kind == "leaky":
        nodes += [_node("Mul", [image, "half"], "a"), _node("Mul", ["mean", "half"], "b"),
                  _node("Add", ["a", "b"], "ab"), _node("Add", ["ab", "unused"], "demasked")]
    elif kind == "nan":
        nodes += [_node("Mul", [image, "zero"], "a"), _node("Div", ["a", "zero"], "nan"),
                  _node("Add", ["nan", "unused"], "demasked")]
    else:
        nodes += [_node("Identity", ["mean"], "demasked")]
    graph = helper.make_graph(
        nodes, "fake_demasker",
        [helper.make_tensor_value_info(image, TensorProto.FLOAT, ["B", 3, "H", "W"]),
         helper.make_tensor_value_info(visible, TensorProto.FLOAT, ["B", 1, "H", "W"])],
        [helper.make_tensor_value_info("demasked", TensorProto.FLOAT, ["B", 3, "h", "w"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def batch(height=37, width=53, k=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(k, height, width, 3), dtype=np.uint8)
    visible = rng.random((k, height, width)) < 0.3
    return images, visible


@pytest.fixture
def leaky(tmp_path):
    return LearnedDemasker(write_graph(tmp_path / "leaky.onnx"), threads=1)


def test_implements_the_demasker_protocol(leaky):
    assert isinstance(leaky, Demasker)


def test_masked_pixel_values_never_reach_the_output(leaky):
    images, visible = batch()
    reference = leaky.demask(images, visible)
    tampered = images.copy()
    noise = np.random.default_rng(1).integers(0, 256, size=images.shape, dtype=np.uint8)
    tampered[~visible] = noise[~visible]
    assert np.array_equal(leaky.demask(tampered, visible), reference)


def test_visible_pixels_are_copied_through_and_masked_ones_filled(leaky):
    images, visible = batch()
    out = leaky.demask(images, visible)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.array_equal(out[visible], images[visible])
    # The fake net adds half the image mean, so masked pixels (zero after hiding) become non-zero.
    assert out[~visible].max() > 0


def test_any_image_size_is_padded_inside_and_cropped_back(tmp_path):
    demasker = LearnedDemasker(write_graph(tmp_path / "leaky.onnx"), threads=1)
    for height, width in ((16, 32), (17, 33), (5, 7)):
        images, visible = batch(height, width, k=2)
        out = demasker.demask(images, visible)
        assert out.shape == images.shape
        assert np.array_equal(out[visible], images[visible])


def test_same_input_twice_gives_identical_output(leaky):
    images, visible = batch(seed=3)
    assert np.array_equal(leaky.demask(images, visible), leaky.demask(images, visible))


def test_large_batches_are_split_without_changing_results(tmp_path):
    path = write_graph(tmp_path / "leaky.onnx")
    images, visible = batch(k=5)
    whole = LearnedDemasker(path, threads=1, max_batch=8).demask(images, visible)
    split = LearnedDemasker(path, threads=1, max_batch=2).demask(images, visible)
    assert np.array_equal(whole, split)


@pytest.mark.parametrize("kind", ["nan", "shape"])
def test_bad_network_output_fails_closed(tmp_path, kind):
    demasker = LearnedDemasker(write_graph(tmp_path / f"{kind}.onnx", kind), threads=1)
    images, visible = batch()
    with pytest.raises(EngineError):
        demasker.demask(images, visible)


def test_bad_inputs_and_models_raise_engine_error(tmp_path, leaky):
    images, visible = batch()
    with pytest.raises(EngineError):
        leaky.demask(images.astype(np.float32), visible)
    with pytest.raises(EngineError):
        leaky.demask(images, visible[:, :-1])
    with pytest.raises(EngineError, match="not found"):
        LearnedDemasker(tmp_path / "missing.onnx")
    with pytest.raises(EngineError, match="not a demasker"):
        LearnedDemasker(write_graph(tmp_path / "other.onnx", input_names=("x", "m")))
    (tmp_path / "garbage.onnx").write_bytes(b"not onnx")
    with pytest.raises(EngineError, match="cannot load"):
        LearnedDemasker(tmp_path / "garbage.onnx")


def test_requesting_an_inactive_provider_is_an_error(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is active here; the fallback case cannot be produced")
    with pytest.raises(EngineError, match="not active"):
        LearnedDemasker(write_graph(tmp_path / "leaky.onnx"),
                        providers=("CUDAExecutionProvider", "CPUExecutionProvider"))


# --- the shipped model ------------------------------------------------------------------------

needs_model = pytest.mark.skipif(not DEFAULT_DEMASKER_PATH.is_file(),
                                 reason=f"default demasker not built yet ({DEFAULT_DEMASKER_PATH})")
CAMVID = Path(os.environ.get("DEMASKED_CAMVID",
                             Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"))


@needs_model
def test_default_model_is_small_and_isolated_at_full_resolution():
    assert DEFAULT_DEMASKER_PATH.stat().st_size <= 10 * 1024 * 1024
    demasker = default_learned_demasker(threads=1)
    visible = recovery_masks(360, 480, 0.005, "column").visible
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(360, 480, 3), dtype=np.uint8)
    images = np.repeat(image[None], visible.shape[0], axis=0)
    reference = demasker.demask(images, visible)
    assert np.array_equal(reference[visible], images[visible])
    tampered = rng.integers(0, 256, size=images.shape, dtype=np.uint8)
    tampered[visible] = images[visible]
    assert np.array_equal(demasker.demask(tampered, visible), reference)
    assert np.array_equal(demasker.demask(images, visible), reference)


@needs_model
def test_default_model_runs_inside_the_certifier():
    masks = detection_masks(72, 96, (8, 8), "column")
    image = np.random.default_rng(2).integers(0, 256, size=(72, 96, 3), dtype=np.uint8)
    result = Certifier(colour_segmenter(), default_learned_demasker(threads=1), masks).certify(image)
    assert result.branch_labels.shape == (masks.k, 72, 96)
    assert result.certified.shape == (72, 96)


def _masked_psnr(prediction, target, visible):
    diff = prediction[~visible].astype(np.float64) - target[~visible].astype(np.float64)
    return 10 * np.log10(255.0**2 / max(np.mean(diff**2), 1e-12))


@needs_model
@pytest.mark.camvid
@pytest.mark.skipif(not (CAMVID / "val").is_dir(),
                    reason=f"CamVid not found at {CAMVID} (set DEMASKED_CAMVID)")
def test_default_model_beats_telea_on_camvid_val_masked_pixels():
    cv2 = pytest.importorskip("cv2")
    names = sorted((CAMVID / "val").glob("*.png"))
    frames = [cv2.cvtColor(cv2.imread(str(names[i])), cv2.COLOR_BGR2RGB) for i in (10, 60)]
    learned, telea = default_learned_demasker(threads=1), TeleaDemasker()
    for masks in (recovery_masks(360, 480, 0.005, "column"), detection_masks(360, 480, 0.01, "column")):
        scores = {"learned": [], "telea": []}
        for frame in frames:
            images = np.where(masks.visible[..., None], frame[None], 0).astype(np.uint8)
            for name, demasker in (("learned", learned), ("telea", telea)):
                out = demasker.demask(images, masks.visible)
                scores[name] += [_masked_psnr(o, frame, v) for o, v in zip(out, masks.visible, strict=True)]
        assert np.mean(scores["learned"]) > np.mean(scores["telea"]), (masks.describe(), scores)
