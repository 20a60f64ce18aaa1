"""Devices the GPU-path tests run on: always ``cpu``; ``cuda`` too, under the ``gpu`` marker."""

from __future__ import annotations

import pytest
import torch

from demasked_ros.engines import defaults

_NO_CUDA = not torch.cuda.is_available()

#: ``pytest.mark.parametrize("device", DEVICES)``: cpu in CI, cuda (marker ``gpu``) where it exists.
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu,
                                          pytest.mark.skipif(_NO_CUDA, reason="needs a CUDA device")]),
]


_ENGINES: dict[str, tuple] = {}


def engines(device: str) -> tuple:
    """The default models' torch twins on ``device`` (segmenter, demasker), built once per device."""
    if device not in _ENGINES:
        _ENGINES[device] = (defaults.default_segmenter(backend="torch", device=device, threads=1),
                            defaults.default_demasker(backend="torch", device=device, threads=1))
    return _ENGINES[device]
