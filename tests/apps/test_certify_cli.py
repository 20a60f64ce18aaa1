import cv2
import numpy as np
import pytest

from demasked_ros.apps.certify_cli import main, resolve_classes
from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.core.visualize import certification_image, colorize, overlay
from demasked_ros.engines.certifier import Certifier
from demasked_ros.engines.factory import make_demasker
from demasked_ros.engines.segmenters import OnnxSegmenter
from tests.tiny_models import write_conv_model


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(45, 61, 3), dtype=np.uint8)
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def model(tmp_path):
    return write_conv_model(tmp_path / "tiny.onnx")


@pytest.mark.parametrize(("extra", "expected_masks", "demasker"), [
    (["--mode", "recovery", "--scheme", "3-mask", "--patch", "0.02"],
     lambda h, w: recovery_masks(h, w, 0.02, "3-mask"), "telea"),
    (["--mode", "detection", "--scheme", "row", "--patch", "6x5", "--demasker", "ns"],
     lambda h, w: detection_masks(h, w, (6, 5), "row"), "ns"),
    (["--mode", "detection", "--band-width", "20", "--patch", "0.05", "--demasker", "solid"],
     lambda h, w: detection_masks(h, w, 0.05, "column", mask_width=20), "solid"),
])
def test_cli_writes_the_librarys_result_as_pngs(image_file, model, tmp_path, capsys, extra, expected_masks,
                                                 demasker):
    out = tmp_path / "out"
    code = main([str(image_file), "--model", str(model), "--classes", "4", "--out", str(out),
                 "--demasker", "telea", *extra])
    assert code == 0
    # The same certification done with the library directly.
    image = cv2.imread(str(image_file))[..., ::-1].copy()
    classes = resolve_classes("4")
    segmenter = OnnxSegmenter(model, classes.names, intra_op_threads=2)
    result = Certifier(segmenter, make_demasker(demasker), expected_masks(45, 61)).certify(image)
    assert result.certified_fraction > 0.0  # something to compare
    written = {suffix: cv2.imread(str(out / f"frame_{suffix}.png"), cv2.IMREAD_UNCHANGED)
               for suffix in ("labels", "certified", "certificate")}
    np.testing.assert_array_equal(written["labels"][..., ::-1], colorize(result.labels, classes.colors))
    np.testing.assert_array_equal(written["certificate"], certification_image(result.certified))
    np.testing.assert_array_equal(written["certified"][..., ::-1],
                                  overlay(image, result.labels, result.certified, classes.colors))
    printed = capsys.readouterr().out
    word = "certified" if "recovery" in extra else "verified"
    assert f"{word} fraction: {100 * result.certified_fraction:.2f} %" in printed


@pytest.mark.parametrize(("args", "message", "code"), [
    (["missing.png"], "image not found", 2),
    (["--patch", "0.9", "--scheme", "column"], "does not fit", 2),
    (["--scheme", "diagonal"], "unknown recovery scheme", 2),
    (["--classes", "3"], "classes", 1),
    (["--band-width", "10"], "detection", 2),
])
def test_cli_errors_are_one_clear_line(image_file, model, tmp_path, capsys, args, message, code):
    if args[0] == "missing.png":
        argv = [str(tmp_path / "missing.png"), "--model", str(model), "--classes", "4"]
    else:
        argv = [str(image_file), "--model", str(model), "--classes", "4", *args]
        if args[:2] == ["--classes", "3"]:
            argv = [str(image_file), "--model", str(model), *args]
    argv += ["--out", str(tmp_path / "o"), "--demasker", "solid"]
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_cli_rejects_an_unreadable_image(tmp_path, model, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    assert main([str(bad), "--model", str(model), "--classes", "4", "--out", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err
