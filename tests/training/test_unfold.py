"""Unfolding the packaged segmenter: exact in eval mode, near-exact in train mode, loadable by
``consistency --init``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from demasked_ros.datasets.procedural import street_scene
from demasked_ros.engines.demasker_net import DemaskerNet
from demasked_ros.engines.segmenter_net import FullResolutionSegNet
from demasked_ros.engines.torch_twins import DemaskerTwin, demasker_module, segmenter_module
from demasked_ros.training import unfold
from demasked_ros.training.data import TrainingDataError
from demasked_ros.training.segmenter_model import build_trunk


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.stack([street_scene(seed, 120, 160)[0] for seed in range(4)])


def _logits(model: torch.nn.Module, frames: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.from_numpy(frames).permute(0, 3, 1, 2).float())


def test_unfolded_network_equals_the_shipped_twin(frames: np.ndarray) -> None:
    net, difference = unfold.unfold_shipped(frames)
    assert difference < 1e-3
    unfolded = FullResolutionSegNet(net, downscale=2, normalize_input=True).eval()
    twin = segmenter_module("cpu")
    other = np.ascontiguousarray(frames[::-1])  # frames beyond the two the function checks itself
    assert float((_logits(unfolded, other) - _logits(twin, other)).abs().max()) < 1e-3


def test_train_mode_starts_close_to_the_shipped_function(frames: np.ndarray) -> None:
    """Batch statistics of the frames the running statistics came from: the labels barely move."""
    net, _ = unfold.unfold_shipped(frames)
    train_mode = FullResolutionSegNet(net, downscale=2, normalize_input=True).train()
    twin = segmenter_module("cpu")
    agree = (_logits(train_mode, frames).argmax(1) == _logits(twin, frames).argmax(1)).float().mean()
    assert float(agree) > 0.9


def test_statistics_matter_in_train_mode(frames: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control for the test above: with placeholder statistics (mean 0, variance 1) the
    eval-mode function is still exact, but train-mode batch norms rescale every layer."""
    monkeypatch.setattr(unfold, "conv_statistics", lambda convs, run: [
        (torch.zeros(c.out_channels), torch.ones(c.out_channels)) for c in convs])
    net, difference = unfold.unfold_shipped(frames)
    assert difference < 1e-3
    train_mode = FullResolutionSegNet(net, downscale=2, normalize_input=True).train()
    twin = segmenter_module("cpu")
    agree = (_logits(train_mode, frames).argmax(1) == _logits(twin, frames).argmax(1)).float().mean()
    assert float(agree) < 0.9


def test_checkpoint_loads_as_the_consistency_trainer_does(frames: np.ndarray, tmp_path: Path) -> None:
    net, difference = unfold.unfold_shipped(frames)
    path = tmp_path / "init.pt"
    unfold.write_checkpoint(net, path, difference)
    state = torch.load(path, map_location="cpu", weights_only=False)
    trunk = build_trunk(state["config"], 11)
    trunk.load_state_dict(state["model"])
    assert state["config"]["downscale"] == 2


def test_bad_frames_are_refused() -> None:
    with pytest.raises(TrainingDataError):
        unfold.unfold_shipped(np.zeros((2, 8, 8), dtype=np.uint8))


def test_cli_writes_a_checked_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shipped.pt"
    assert unfold.main(["--out", str(out), "--procedural", "--frames", "2"]) == 0
    assert out.is_file()
    assert "max |unfolded - twin|" in capsys.readouterr().out


def test_demasker_unfolds_exactly(frames: np.ndarray) -> None:
    net, difference = unfold.unfold_shipped_demasker(frames)
    assert difference < 0.05  # 0..255 pixel units
    twin = demasker_module("cpu")
    visible = torch.ones(2, 1, 120, 160)
    visible[:, :, :, 40:90] = 0
    images = torch.from_numpy(np.ascontiguousarray(frames[2:])).permute(0, 3, 1, 2).float() * visible
    with torch.no_grad():
        gap = float((DemaskerTwin(net).eval()(images, visible) - twin(images, visible)).abs().max())
    assert gap < 0.05


def test_demasker_cli_writes_an_init_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "dem.pt"
    assert unfold.main(["--out", str(out), "--model", "demasker", "--procedural", "--frames", "2"]) == 0
    state = torch.load(out, map_location="cpu", weights_only=False)
    fresh = DemaskerNet(tuple(state["config"]["widths"]))
    fresh.load_state_dict(state["model"])  # what `demasked-train demasker --init` does
