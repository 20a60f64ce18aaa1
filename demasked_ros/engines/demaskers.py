"""Classical demaskers: OpenCV inpainting (TELEA, Navier-Stokes) and a solid fill.

The solid fill is the paper's no-demasking ablation (and the DRS-S baseline's black fill). Each
demasker zeroes masked pixels itself before working, so it reads visible pixels only even when
called outside the :class:`~demasked_ros.engines.certifier.Certifier`.
"""

from __future__ import annotations

import cv2
import numpy as np

from demasked_ros.engines.errors import EngineError


def hide_masked(images: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Copy of ``images`` with every masked pixel set to zero (validates shapes on the way)."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise EngineError(f"demasker input must be B x H x W x 3 uint8, got {images.shape} {images.dtype}")
    if visible.shape != images.shape[:3] or visible.dtype != bool:
        raise EngineError(f"visibility must be bool {images.shape[:3]}, got {visible.shape} {visible.dtype}")
    return np.where(visible[..., None], images, np.uint8(0))


class SolidFillDemasker:
    """Fills masked pixels with one colour: no demasking at all (the paper's ablation)."""

    def __init__(self, color: tuple[int, int, int] = (0, 0, 0)) -> None:
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            raise EngineError(f"fill colour must be an RGB triple in 0..255, got {color}")
        self.color = np.array(color, dtype=np.uint8)

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Visible pixels unchanged, masked pixels set to the fill colour."""
        return np.where(visible[..., None], hide_masked(images, visible), self.color)


class OpenCVInpaintDemasker:
    """Inpaints masked pixels with ``cv2.inpaint`` (one image at a time, deterministic)."""

    def __init__(self, method: int, radius: float = 3.0) -> None:
        if radius <= 0:
            raise EngineError(f"inpainting radius must be positive, got {radius}")
        self.method = method
        self.radius = float(radius)

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Each image inpainted from its visible pixels; visible pixels are returned unchanged."""
        hidden = hide_masked(images, visible)
        out = np.empty_like(hidden)
        for index in range(hidden.shape[0]):
            if not visible[index].any():
                out[index] = 0  # nothing to inpaint from: a constant, input-independent image
                continue
            holes = np.where(visible[index], 0, 255).astype(np.uint8)
            out[index] = cv2.inpaint(hidden[index], holes, self.radius, self.method)
        return np.where(visible[..., None], hidden, out)


class TeleaDemasker(OpenCVInpaintDemasker):
    """Telea's fast-marching inpainting (``cv2.INPAINT_TELEA``)."""

    def __init__(self, radius: float = 3.0) -> None:
        super().__init__(cv2.INPAINT_TELEA, radius)


class NavierStokesDemasker(OpenCVInpaintDemasker):
    """Navier-Stokes based inpainting (``cv2.INPAINT_NS``)."""

    def __init__(self, radius: float = 3.0) -> None:
        super().__init__(cv2.INPAINT_NS, radius)
