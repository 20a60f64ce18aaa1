"""The batch-independence probe and the load-time refusals of batch-statistics models."""

import logging

import numpy as np
import pytest
import torch

from demasked_ros.core.masks import recovery_masks
from demasked_ros.engines.certifier import Certifier, ChunkedExecutor
from demasked_ros.engines.defaults import default_demasker, default_segmenter
from demasked_ros.engines.demaskers import SolidFillDemasker, TeleaDemasker
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.onnx_graph import batch_statistics_ops, check_inference_graph
from demasked_ros.engines.probe import probe_models
from demasked_ros.engines.segmenters import OnnxSegmenter
from demasked_ros.engines.torch_backend import TorchSegmenter
from tests.tiny_models import CLASS_NAMES, colour_segmenter, write_conv_model


class BatchNormalised(torch.nn.Module):
    """Conv, then normalisation with the batch's statistics (survives eval(): hand-written)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return (y - y.mean(dim=(0, 2, 3), keepdim=True)) / (y.std(dim=(0, 2, 3), keepdim=True) + 1e-5)


class WithBatchNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


def onnx_model(path, op="reduce", training_mode=1):
    """Conv + batch-statistics normalisation: ReduceMean over the batch, or BatchNormalization."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1])]
    if op == "reduce":
        nodes += [helper.make_node("ReduceMean", ["c"], ["m"], axes=[0, 2, 3], keepdims=1),
                  helper.make_node("Sub", ["c", "m"], ["logits"])]
        opset = 17
    else:
        init += [numpy_helper.from_array(v.astype(np.float32), n) for n, v in
                 (("s", np.ones(4)), ("b", np.zeros(4)), ("rm", np.zeros(4)), ("rv", np.ones(4)))]
        outputs = ["logits", "om", "ov"] if training_mode else ["logits"]
        nodes.append(helper.make_node("BatchNormalization", ["c", "s", "b", "rm", "rv"], outputs,
                                      training_mode=training_mode))
        opset = 15
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                         ["B", 3, "H", "W"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                             ["B", 4, "H", "W"])], initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


class BatchMeanFill:
    """A demasker that fills masked pixels with the batch's mean visible colour."""

    def demask(self, images, visible):
        mean = images[visible].reshape(-1, 3).mean(axis=0).astype(np.uint8)
        return np.where(visible[..., None], images, mean)


def test_clean_models_pass():
    assert probe_models(colour_segmenter(), TeleaDemasker()).independent
    verdict = probe_models(default_segmenter(threads=1), default_demasker(threads=1))
    assert verdict.independent, verdict.describe()
    assert verdict.checks > 10 and "passed" in verdict.describe()


def test_torch_batch_statistics_segmenter_fails():
    verdict = probe_models(TorchSegmenter(BatchNormalised(), CLASS_NAMES), SolidFillDemasker())
    assert not verdict.independent
    assert any("segmenter" in p and "branch 0" in p for p in verdict.problems), verdict.problems
    assert verdict.key_values()[0] == ("batch_probe", "failed")


def test_onnx_batch_statistics_segmenter_fails(tmp_path):
    segmenter = OnnxSegmenter(onnx_model(tmp_path / "reduce.onnx"), CLASS_NAMES)
    verdict = probe_models(segmenter, SolidFillDemasker())
    assert not verdict.independent and "segmenter" in verdict.describe()
    clean = OnnxSegmenter(write_conv_model(tmp_path / "conv.onnx"), CLASS_NAMES)
    assert probe_models(clean, SolidFillDemasker()).independent


def test_batch_dependent_demasker_fails():
    verdict = probe_models(colour_segmenter(), BatchMeanFill())
    assert not verdict.independent
    assert all(p.startswith("demasker") for p in verdict.problems)


def test_onnx_batchnorm_in_training_mode_is_refused_at_load(tmp_path):
    trained = onnx_model(tmp_path / "bn_train.onnx", op="bn", training_mode=1)
    assert batch_statistics_ops(trained.read_bytes()) == ["BatchNormalization(training_mode=1)"]
    with pytest.raises(EngineError, match="batch statistics"):
        OnnxSegmenter(trained, CLASS_NAMES)
    inference = onnx_model(tmp_path / "bn_eval.onnx", op="bn", training_mode=0)
    check_inference_graph(inference)
    assert probe_models(OnnxSegmenter(inference, CLASS_NAMES), SolidFillDemasker()).independent
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(EngineError):
        check_inference_graph(tmp_path / "junk.onnx")


def test_onnx_batchnorm_inside_a_subgraph_is_found(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    inner_path = onnx_model(tmp_path / "inner.onnx", op="bn", training_mode=1)
    inner = onnx.load(str(inner_path)).graph
    branch = helper.make_graph(list(inner.node), "then", [], list(inner.output),
                               initializer=list(inner.initializer))
    outer = helper.make_graph(
        [helper.make_node("If", ["cond"], ["logits"], then_branch=branch, else_branch=branch)], "outer",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)])
    model = helper.make_model(outer, opset_imports=[helper.make_opsetid("", 15)])
    assert len(batch_statistics_ops(model.SerializeToString())) == 2


def test_traced_torchscript_in_training_mode_is_refused(tmp_path):
    path = tmp_path / "traced.pt"
    torch.jit.trace(WithBatchNorm().train(), torch.rand(2, 3, 8, 8)).save(str(path))
    with pytest.raises(EngineError, match="training mode"):
        TorchSegmenter(path, CLASS_NAMES)
    torch.jit.trace(WithBatchNorm().eval(), torch.rand(2, 3, 8, 8)).save(str(path))
    assert probe_models(TorchSegmenter(path, CLASS_NAMES), SolidFillDemasker()).independent


def test_pt2_exported_in_training_mode_is_put_in_eval_mode(tmp_path):
    module = WithBatchNorm().train()
    path = tmp_path / "trained.pt2"
    auto = torch.export.Dim.AUTO
    program = torch.export.export(module, (torch.rand(2, 3, 8, 8),),
                                  dynamic_shapes={"x": {0: auto, 2: auto, 3: auto}})
    torch.export.save(program, str(path))
    segmenter = TorchSegmenter(path, CLASS_NAMES)
    assert probe_models(segmenter, SolidFillDemasker()).independent
    images = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    reference = WithBatchNorm().eval()
    tensor = (torch.from_numpy(images.transpose(0, 3, 1, 2)).float() - segmenter._mean) / segmenter._std
    with torch.no_grad():
        expected = reference(tensor).argmax(1).numpy()
    np.testing.assert_array_equal(segmenter.segment(images), expected)


def branch_zero_only_pixels(masks):
    return masks.visible[0] & ~masks.visible[1:].any(axis=0)


def test_certifier_refuses_or_falls_back(caplog):
    masks = recovery_masks(48, 64, (6, 8), "column")
    segmenter = TorchSegmenter(BatchNormalised(), CLASS_NAMES)
    with pytest.raises(EngineError, match="batch-dependent"):
        Certifier(segmenter, SolidFillDemasker(), masks, batch_probe="refuse")
    with caplog.at_level(logging.WARNING):
        fallback = Certifier(segmenter, SolidFillDemasker(), masks, batch_probe="fallback")
    assert "one branch per call" in caplog.text
    assert isinstance(fallback.executor, ChunkedExecutor) and fallback.executor.chunk_size == 1
    assert fallback.probe is not None and not fallback.probe.independent
    # Pixels only branch 0 sees: batched, they move other branches; one per call, they cannot.
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    attacked = image.copy()
    attacked[branch_zero_only_pixels(masks)] = 255
    batched = Certifier(segmenter, SolidFillDemasker(), masks)
    moved = batched.certify(image).branch_labels[1:] != batched.certify(attacked).branch_labels[1:]
    assert moved.any()  # the bug the probe guards against
    np.testing.assert_array_equal(fallback.certify(image).branch_labels[1:],
                                  fallback.certify(attacked).branch_labels[1:])
    clean = Certifier(colour_segmenter(), SolidFillDemasker(), masks, batch_probe="refuse")
    assert clean.probe is not None and clean.probe.independent
    with pytest.raises(EngineError):
        Certifier(colour_segmenter(), SolidFillDemasker(), masks, batch_probe="maybe")


def test_isolation_check_alone_catches_a_model_consistent_with_single_calls():
    """Batch-mates matter only when image 0 is black: the single-image check cannot see it."""
    from demasked_ros.engines.segmenters import CallableSegmenter
    from tests.tiny_models import colour_rule

    def sneaky(images):
        labels = colour_rule(images)
        if len(images) > 1 and images[0].max() == 0:
            labels[1:] = 0
        return labels

    verdict = probe_models(CallableSegmenter(sneaky, CLASS_NAMES), SolidFillDemasker())
    assert not verdict.independent
    assert all("changed when only branch 0" in p for p in verdict.problems), verdict.problems
