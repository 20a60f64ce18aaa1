"""TorchSegmenter: nn.Module and TorchScript models behind the Segmenter protocol."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="the torch backend needs torch (requirements/train.txt)")

import torch

from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.protocols import Segmenter
from demasked_ros.engines.torch_backend import TorchSegmenter

NAMES = ["a", "b", "c", "d"]


class ChannelArgmax(torch.nn.Module):
    """Logits = [0, R, G, B] per pixel: label = brightest channel (1..3)."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x[:, :1]) - 1e3, x], dim=1)


class DictOutput(torch.nn.Module):
    def forward(self, x):
        return {"out": torch.cat([torch.zeros_like(x[:, :1]) - 1e3, x], dim=1)}


class Broken(torch.nn.Module):
    def forward(self, x):
        return x[:, :2]  # two channels, four class names


def coloured_batch() -> np.ndarray:
    images = np.zeros((2, 6, 8, 3), np.uint8)
    images[0, :, :4, 0] = 200  # red left half
    images[0, :, 4:, 2] = 200  # blue right half
    images[1, ..., 1] = 200  # green
    return images


@pytest.fixture(autouse=True)
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_module_segmenter_follows_the_protocol_and_defaults_to_one_thread():
    seg = TorchSegmenter(ChannelArgmax(), NAMES, mean=(0, 0, 0), std=(1, 1, 1))
    assert isinstance(seg, Segmenter)
    labels = seg.segment(coloured_batch())
    assert labels.shape == (2, 6, 8) and labels.dtype == np.int32
    assert (labels[0, :, :4] == 1).all() and (labels[0, :, 4:] == 3).all() and (labels[1] == 2).all()
    assert torch.get_num_threads() == 1
    np.testing.assert_array_equal(seg.segment(coloured_batch()), labels)


def test_bgr_channel_order_swaps_the_input_channels():
    seg = TorchSegmenter(ChannelArgmax(), NAMES, mean=(0, 0, 0), std=(1, 1, 1), channel_order="BGR")
    labels = seg.segment(coloured_batch())
    assert (labels[0, :, :4] == 3).all() and (labels[0, :, 4:] == 1).all()


def test_input_size_resizes_inside_and_returns_labels_at_frame_size():
    seen = []

    class Spy(ChannelArgmax):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return super().forward(x)

    seg = TorchSegmenter(Spy(), NAMES, input_size=(3, 4), mean=(0, 0, 0), std=(1, 1, 1))
    labels = seg.segment(coloured_batch())
    assert seen == [(2, 3, 3, 4)]
    assert labels.shape == (2, 6, 8) and (labels[1] == 2).all()


def test_torchscript_file_and_dict_outputs_give_the_same_labels(tmp_path):
    path = tmp_path / "model.pt"
    torch.jit.script(ChannelArgmax()).save(str(path))
    from_file = TorchSegmenter(path, NAMES, mean=(0, 0, 0), std=(1, 1, 1), threads=2)
    from_dict = TorchSegmenter(DictOutput(), NAMES, mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_array_equal(from_file.segment(coloured_batch()), from_dict.segment(coloured_batch()))
    assert torch.get_num_threads() == 1  # set by the last segmenter built (threads=1 default)


def test_torch_export_program_file_loads_with_dynamic_shapes(tmp_path):
    path = tmp_path / "model.pt2"
    batch, height, width = (torch.export.Dim(n) for n in ("batch", "height", "width"))
    program = torch.export.export(ChannelArgmax(), (torch.zeros(2, 3, 4, 4),),
                                  dynamic_shapes={"x": {0: batch, 2: height, 3: width}})
    torch.export.save(program, str(path))
    seg = TorchSegmenter(path, NAMES, mean=(0, 0, 0), std=(1, 1, 1))
    reference = TorchSegmenter(ChannelArgmax(), NAMES, mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_array_equal(seg.segment(coloured_batch()), reference.segment(coloured_batch()))


def test_bad_models_and_settings_raise_engine_errors(tmp_path):
    with pytest.raises(EngineError, match="not found"):
        TorchSegmenter(tmp_path / "missing.pt", NAMES)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(EngineError, match="cannot load"):
        TorchSegmenter(tmp_path / "junk.pt", NAMES)
    with pytest.raises(EngineError, match="2 classes"):
        TorchSegmenter(Broken(), NAMES).segment(coloured_batch())
    with pytest.raises(EngineError, match="channel_order"):
        TorchSegmenter(ChannelArgmax(), NAMES, channel_order="RBG")
    with pytest.raises(EngineError, match="uint8"):
        TorchSegmenter(ChannelArgmax(), NAMES).segment(coloured_batch().astype(np.float32))
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="CUDA is not available"):
            TorchSegmenter(ChannelArgmax(), NAMES, device="cuda")
