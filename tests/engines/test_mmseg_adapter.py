"""mmsegmentation adapter: runs where mmseg is importable (scripts/build_mmcv.sh), else only the
checks that need no mmseg."""

from __future__ import annotations

import numpy as np
import pytest

from demasked_ros.engines import mmseg_adapter
from demasked_ros.engines.errors import EngineError

needs_mmseg = pytest.mark.skipif(not mmseg_adapter.mmseg_available(),
                                 reason="mmsegmentation/mmcv not installed (see scripts/build_mmcv.sh)")

#: A small FCN (ResNet-18 V1c) with random weights: no download, no checkpoint.
TINY_CONFIG = """
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type='EncoderDecoder', data_preprocessor=data_preprocessor, pretrained=None,
    backbone=dict(type='ResNetV1c', depth=18, num_stages=4, out_indices=(3,), dilations=(1, 1, 1, 1),
                  strides=(1, 2, 2, 2), norm_cfg=norm_cfg, norm_eval=False, contract_dilation=True),
    decode_head=dict(type='FCNHead', in_channels=512, in_index=0, channels=32, num_convs=1,
                     concat_input=False, dropout_ratio=0.0, num_classes=11, norm_cfg=norm_cfg,
                     align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(), test_cfg=dict(mode='whole'))
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(96, 64), keep_ratio=False),
                 dict(type='PackSegInputs')]
"""


def test_pipeline_scale_reads_the_resize_step_as_height_width():
    cfg = {"test_pipeline": [{"type": "LoadImageFromFile"}, {"type": "Resize", "scale": (2048, 1024)}]}
    assert mmseg_adapter._pipeline_scale(cfg) == (1024, 2048)
    assert mmseg_adapter._pipeline_scale({"test_pipeline": [{"type": "LoadImageFromFile"}]}) is None


@pytest.mark.skipif(mmseg_adapter.mmseg_available(), reason="mmseg is installed here")
def test_missing_mmseg_gives_a_clear_error_pointing_to_the_build_script(tmp_path):
    with pytest.raises(EngineError, match=r"build_mmcv\.sh"):
        mmseg_adapter.MmsegSegmenter(tmp_path / "config.py")


@needs_mmseg
def test_random_weight_model_segments_at_frame_size_deterministically(tmp_path):
    config = tmp_path / "tiny_fcn.py"
    config.write_text(TINY_CONFIG)
    names = [f"c{i}" for i in range(11)]
    seg = mmseg_adapter.MmsegSegmenter(config, checkpoint=None, class_names=names)
    assert seg.channel_order == "RGB" and seg.input_size == (64, 96)
    assert seg.mean == pytest.approx((123.675, 116.28, 103.53))
    images = np.random.default_rng(0).integers(0, 256, (2, 45, 70, 3), dtype=np.uint8)
    first, second = seg.segment(images), seg.segment(images)
    assert first.shape == (2, 45, 70) and first.max() < 11
    np.testing.assert_array_equal(first, second)


@needs_mmseg
def test_missing_checkpoint_is_an_engine_error(tmp_path):
    config = tmp_path / "tiny_fcn.py"
    config.write_text(TINY_CONFIG)
    with pytest.raises(EngineError, match="checkpoint not found"):
        mmseg_adapter.MmsegSegmenter(config, checkpoint=tmp_path / "none.pth")
