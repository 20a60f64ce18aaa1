"""Devices the GPU-path tests run on: always ``cpu``; ``cuda`` too, under the ``gpu`` marker."""

from __future__ import annotations

import pytest
import torch

_NO_CUDA = not torch.cuda.is_available()

#: ``pytest.mark.parametrize("device", DEVICES)``: cpu in CI, cuda (marker ``gpu``) where it exists.
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu,
                                          pytest.mark.skipif(_NO_CUDA, reason="needs a CUDA device")]),
]
