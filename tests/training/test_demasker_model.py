"""DemaskerNet: masked values never matter, visible pixels pass through, sizes and budget."""

import pytest

torch = pytest.importorskip("torch")

from demasked_ros.training.demasker_model import MODEL_STRIDE, DemaskerNet, count_parameters  # noqa: E402


def inputs(batch=2, height=2 * MODEL_STRIDE, width=3 * MODEL_STRIDE, seed=0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=generator)
    visible = (torch.rand(batch, 1, height, width, generator=generator) > 0.7).float()
    return image, visible


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DemaskerNet().eval()


def test_parameter_budget_is_small():
    assert 300_000 <= count_parameters(DemaskerNet()) <= 1_500_000


def test_output_ignores_masked_values(model):
    image, visible = inputs()
    tampered = torch.where(visible > 0, image, torch.rand_like(image))
    with torch.no_grad():
        assert torch.equal(model(image, visible), model(tampered, visible))


def test_visible_pixels_pass_through_and_output_is_an_image(model):
    image, visible = inputs(seed=1)
    with torch.no_grad():
        out = model(image, visible)
    assert out.shape == image.shape
    keep = visible.expand_as(image) > 0
    assert torch.equal(out[keep], image[keep])
    assert out.min() >= 0 and out.max() <= 1


def test_gradients_reach_every_layer():
    model = DemaskerNet()
    image, visible = inputs(seed=2)
    model(image, visible).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing
