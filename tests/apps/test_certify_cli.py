import cv2
import numpy as np
import pytest

from demasked_ros.apps.certify_cli import main
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


@pytest.mark.parametrize("extra", [
    ["--mode", "recovery", "--scheme", "3-mask", "--patch", "0.02"],
    ["--mode", "detection", "--scheme", "row", "--patch", "6x5", "--demasker", "ns"],
    ["--mode", "detection", "--band-width", "20", "--patch", "0.05", "--demasker", "solid"],
])
def test_cli_writes_pngs_and_prints_fraction(image_file, model, tmp_path, capsys, extra):
    out = tmp_path / "out"
    code = main([str(image_file), "--model", str(model), "--classes", "4", "--out", str(out),
                 "--demasker", "telea", *extra])
    assert code == 0
    printed = capsys.readouterr().out
    assert "fraction:" in printed
    for suffix in ("labels", "certified", "certificate"):
        written = cv2.imread(str(out / f"frame_{suffix}.png"))
        assert written is not None and written.shape[:2] == (45, 61)


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
