"""``demasked-train finetune`` end to end on a tiny torch model and a tiny CamVid-layout folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training tests need torch (requirements/train.txt)")

from demasked_ros.training import cli  # noqa: E402
from tests.training.tiny_torch import TinySegmenter, write_tiny_camvid  # noqa: E402

FAST = ["--steps-per-epoch", "2", "--batch-size", "2", "--lr", "1e-2", "--demasker", "telea"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_tiny_camvid(tmp_path_factory.mktemp("tiny_camvid"))


def test_factory_model_is_finetuned_exported_and_carded(tiny_data, tmp_path):
    import onnxruntime as ort

    from demasked_ros.core.classes import CAMVID
    from demasked_ros.engines.segmenters import OnnxSegmenter

    out = tmp_path / "ft"
    code = cli.main(["finetune", "--model", "tests.training.tiny_torch:tiny_segmenter",
                     "--data", str(tiny_data), "--out", str(out), "--epochs", "2", "--val-split", "val",
                     "--eval-frames", "3", *FAST])
    assert code == 0
    card = (out / "MODEL_CARD.md").read_text()
    assert "| recovery %C |" in card and "| detection FAR |" in card and "tiny_segmenter" in card
    rows = [line for line in card.splitlines() if line.startswith("| clean mIoU |")]
    before, after = (float(v) for v in rows[0].strip("|").split("|")[1:3])
    assert after > before  # two epochs at lr 1e-2 learn the sky/road/car scenes
    session = ort.InferenceSession(str(out / "segmenter.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == list(CAMVID.names) and meta["mean"] == "[0, 0, 0]"
    labels, logits = session.run(None, {"image": np.random.default_rng(0).uniform(0, 255, (2, 3, 40, 56))
                                        .astype(np.float32)})
    assert logits.shape == (2, 11, 40, 56)  # dynamic size
    np.testing.assert_array_equal(labels, logits.argmax(1))
    segmenter = OnnxSegmenter(out / "segmenter.onnx", CAMVID.names, mean=(0, 0, 0), std=(1, 1, 1))
    assert segmenter.segment(np.zeros((1, 48, 64, 3), np.uint8)).shape == (1, 48, 64)


def test_torchscript_and_exported_program_models_and_resume(tiny_data, tmp_path):
    scripted = tmp_path / "tiny.ts"
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(TinySegmenter()), str(scripted))
    out = tmp_path / "ts"
    base = ["finetune", "--model", str(scripted), "--data", str(tiny_data), "--out", str(out), *FAST]
    assert cli.main([*base, "--epochs", "1"]) == 0
    assert cli.main([*base, "--epochs", "2", "--resume"]) == 0
    card = (out / "MODEL_CARD.md").read_text()
    epochs = [line.split("|")[1].strip() for line in card.splitlines() if line.startswith("| ") and
              line.split("|")[1].strip().isdigit()]
    assert epochs == ["0", "1"]  # the resumed run continued at epoch 1, did not redo epoch 0
    assert (out / "segmenter.onnx").is_file()

    exported = tmp_path / "tiny.pt2"
    model = TinySegmenter().eval()  # .pt2 programs keep their mode: eval = frozen batch norm
    dims = {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
    program = torch.export.export(model, (torch.rand(2, 3, 48, 64) * 255,), dynamic_shapes=(dims,))
    torch.export.save(program, str(exported))
    out2 = tmp_path / "pt2"
    assert cli.main(["finetune", "--model", str(exported), "--data", str(tiny_data), "--out", str(out2),
                     "--epochs", "1", *FAST]) == 0
    assert (out2 / "segmenter.onnx").is_file()


@pytest.mark.parametrize("model", ["no_such_module:make", "tests.training.tiny_torch:missing",
                                   "missing.pt2", "tests.training.tiny_torch:write_tiny_camvid_x"])
def test_bad_model_spec_gives_exit_code_2(tiny_data, tmp_path, model, caplog):
    assert cli.main(["finetune", "--model", model, "--data", str(tiny_data), "--out", str(tmp_path / "x"),
                     *FAST]) == 2
    assert "finetune" in caplog.text or "cannot" in caplog.text or "not found" in caplog.text
