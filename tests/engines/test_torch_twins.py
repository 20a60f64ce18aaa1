"""Torch twins of the default models: same weights as the ONNX files, same labels, contract shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from demasked_ros.core.masks import detection_masks, recovery_masks
from demasked_ros.engines import defaults, torch_twins
from demasked_ros.engines.learned_demasker import default_learned_demasker
from tests.engines.gpu_devices import DEVICES


def agreement_frames(count: int = 3) -> list[np.ndarray]:
    """CamVid val frames where present (evenly spread), procedural street scenes otherwise."""
    try:
        from demasked_ros.datasets.base import Frame
        from demasked_ros.datasets.camvid import CamVidSource, find_camvid_root

        root = find_camvid_root()
        if root is not None and (root / "val").is_dir():
            source = CamVidSource(root, "val", with_labels=False)
            step = max(1, len(source) // count)
            wanted = set(range(0, len(source), step)[:count])
            return [record.image for record in source.iter_records(wanted) if isinstance(record, Frame)]
    except ImportError:  # cv2-free machines: procedural frames below
        pass
    from demasked_ros.datasets.procedural import street_scene

    return [street_scene(seed)[0] for seed in range(count)]


def test_weights_are_committed_small_and_load_strictly():
    sizes = [torch_twins.SEGMENTER_WEIGHTS.stat().st_size, torch_twins.DEMASKER_WEIGHTS.stat().st_size]
    assert sum(sizes) <= 10 * 1024 * 1024
    for path, build in ((torch_twins.SEGMENTER_WEIGHTS, torch_twins.segmenter_architecture),
                        (torch_twins.DEMASKER_WEIGHTS, torch_twins.demasker_architecture)):
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert set(state) == set(build().state_dict())  # no batch norms left: folded like the ONNX


def test_committed_weights_are_the_onnx_initializers():
    pytest.importorskip("onnx", reason="reading ONNX initializers needs the onnx package")
    for build, inputs, onnx_path, weights in (
        (torch_twins.segmenter_architecture, (torch.zeros(1, 3, 64, 64),), torch_twins.SEGMENTER_ONNX,
         torch_twins.SEGMENTER_WEIGHTS),
        (torch_twins.demasker_architecture, (torch.zeros(1, 3, 32, 32), torch.ones(1, 1, 32, 32)),
         torch_twins.DEMASKER_ONNX, torch_twins.DEMASKER_WEIGHTS),
    ):
        fresh = torch_twins.twin_state_from_onnx(build(), inputs, onnx_path)
        committed = torch.load(weights, map_location="cpu", weights_only=True)
        for key, value in fresh.items():
            assert torch.equal(committed[key].float(), value), key


@pytest.mark.parametrize("device", DEVICES)
def test_twin_segmenter_labels_agree_with_the_onnx_model(device):
    onnx_segmenter = defaults.default_segmenter(threads=1)
    twin = defaults.default_segmenter(backend="torch", device=device, threads=1)
    agree = total = 0
    for frame in agreement_frames():
        expected = onnx_segmenter.segment(frame[None])
        got = twin.segment(frame[None])
        agree += int((got == expected).sum())
        total += expected.size
    assert agree / total >= 0.999, f"labels agree on {agree / total:.5f} of the pixels"


@pytest.mark.parametrize("device", DEVICES)
def test_twin_demasker_matches_the_onnx_model(device):
    onnx_demasker = default_learned_demasker(threads=1)
    twin = defaults.default_demasker(backend="torch", device=device, threads=1)
    frame = agreement_frames(1)[0]
    for masks in (recovery_masks(360, 480, 0.005, "column"), detection_masks(360, 480, 0.01, "column")):
        visible = masks.visible[:3]
        batch = np.repeat(frame[None], 3, axis=0) * visible[..., None]
        expected = onnx_demasker.demask(batch, visible).astype(np.int16)
        got = twin.demask(batch, visible).astype(np.int16)
        np.testing.assert_array_equal(got[visible], batch[visible])  # visible pixels copied through
        diff = np.abs(got - expected)
        assert diff.max() <= 2 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_modules_follow_the_contract_and_are_differentiable(device):
    segmenter = torch_twins.segmenter_module(device)
    demasker = torch_twins.demasker_module(device)
    assert not segmenter.training and not demasker.training
    images = (torch.rand(2, 3, 37, 53, device=device) * 255).requires_grad_(True)
    logits = segmenter(images)
    assert logits.shape == (2, 11, 37, 53) and logits.dtype == torch.float32
    logits.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    visible = (torch.rand(2, 1, 37, 53, device=device) > 0.5).float()
    masked = (images.detach() * visible).requires_grad_(True)
    out = demasker(masked, visible)
    assert out.shape == masked.shape
    keep = visible.bool().expand_as(out)
    assert torch.equal(out[keep], masked.detach()[keep])  # composited: visible pixels are the input's
    assert float(out.detach().min()) >= 0.0 and float(out.detach().max()) <= 255.0
    out.sum().backward()
    assert masked.grad is not None


def test_unknown_backend_and_missing_weights_raise(tmp_path, monkeypatch):
    from demasked_ros.engines.errors import EngineError

    with pytest.raises(EngineError, match="backend"):
        defaults.default_segmenter(backend="tensorrt")
    monkeypatch.setattr(torch_twins, "SEGMENTER_WEIGHTS", tmp_path / "missing.pt")
    with pytest.raises(EngineError, match="regenerate"):
        torch_twins.segmenter_module()


@pytest.mark.parametrize("device", DEVICES)
def test_torch_demasker_called_directly_ignores_masked_values(device):
    twin = defaults.default_demasker(backend="torch", device=device, threads=1)
    masks = recovery_masks(48, 64, (6, 8), "column")
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 256, (masks.k, 48, 64, 3), dtype=np.uint8)
    noisy = batch.copy()
    noisy[~masks.visible] = rng.integers(0, 256, size=(int((~masks.visible).sum()), 3), dtype=np.uint8)
    clean = twin.demask(batch, masks.visible)
    np.testing.assert_array_equal(twin.demask(noisy, masks.visible), clean)
    np.testing.assert_array_equal(clean[masks.visible], batch[masks.visible])
    as_tensor = torch.from_numpy(noisy).permute(0, 3, 1, 2).contiguous().to(device)
    out = twin.demask_tensor(as_tensor, torch.from_numpy(np.array(masks.visible)).to(device))
    np.testing.assert_array_equal(out.permute(0, 2, 3, 1).cpu().numpy(), clean)


def test_a_twin_is_built_from_any_onnx_file_of_the_default_architecture(tmp_path):
    pytest.importorskip("onnx", reason="reading ONNX initializers needs the onnx package")
    import shutil

    copy = tmp_path / "fold_model.onnx"
    shutil.copyfile(torch_twins.SEGMENTER_ONNX, copy)
    built = torch_twins.segmenter_module_from_onnx(copy).state_dict()
    packaged = torch_twins.segmenter_module().state_dict()
    assert all(torch.equal(built[key], value) for key, value in packaged.items())
    demasker = torch_twins.demasker_module_from_onnx(torch_twins.DEMASKER_ONNX).state_dict()
    packaged = torch_twins.demasker_module().state_dict()
    assert all(torch.equal(demasker[key], value) for key, value in packaged.items())
    with pytest.raises(torch_twins.EngineError, match="Conv"):  # another architecture
        torch_twins.segmenter_module_from_onnx(torch_twins.DEMASKER_ONNX)
    with pytest.raises(torch_twins.EngineError, match="not found"):
        torch_twins.segmenter_module_from_onnx(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(torch_twins.EngineError, match="cannot read"):
        torch_twins.segmenter_module_from_onnx(tmp_path / "bad.onnx")
