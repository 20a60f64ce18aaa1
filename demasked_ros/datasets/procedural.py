"""Deterministic procedural street scenes with exact CamVid labels, and a smooth "drive" frame source.

A seed draws a straight street in world coordinates (metres): a road with lane markings, pavements,
building facades with windows, trees, poles (some carrying signs), fences, parked and moving cars. A
pinhole camera 1.5 m above the road renders it by painter's order (ground, facades, fences, then
objects far to near) into an RGB image and, from the same polygons, an exact label map: every pixel's
label is the class of the polygon that painted it, so the ground truth is exact by construction. The
far end of the street, where the geometry collapses to a few pixels, is labelled void (11), as CamVid's
annotators leave unresolvable regions void.

Textures are fixed screen-space noise fields per seed modulated per class (fine grain on asphalt,
blotches on foliage, cloud on the sky) plus distance haze, so consecutive frames of a drive vary
continuously (only the camera and the moving cars move) and nothing flickers.

The street itself is drawn in :mod:`~.procedural_street`, its projection to pixels in
:mod:`~.procedural_render`; this module holds the public entry points and re-exports the class ids.
"""

from __future__ import annotations

from collections.abc import Container, Iterator

import numpy as np

from demasked_ros.core.classes import CAMVID, ClassInfo
from demasked_ros.datasets.base import DatasetError, Frame, FrameRecord, SourceBase
from demasked_ros.datasets.procedural_render import _Renderer
from demasked_ros.datasets.procedural_street import (
    BUILDING,
    CAR,
    FENCE,
    PAVEMENT,
    POLE,
    ROAD,
    SIGN,
    SKY,
    TREE,
    VOID,
    Polygon,
    _build_street,
    _Street,
)

__all__ = ["BUILDING", "CAR", "FENCE", "PAVEMENT", "POLE", "ROAD", "SIGN", "SKY", "TREE", "VOID", "Polygon",
           "ProceduralSource", "street_scene"]


def _check_size(seed: int, height: int, width: int) -> None:
    if seed < 0:
        raise DatasetError(f"seed must be >= 0, got {seed}")
    if height < 16 or width < 16:
        raise DatasetError(f"image size must be at least 16x16, got {width}x{height} (W x H)")


def street_scene(seed: int, height: int = 360, width: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """One procedural street scene: (H x W x 3 uint8 RGB image, H x W uint8 exact CamVid labels).

    Deterministic in ``(seed, height, width)``; equals frame 0 of ``ProceduralSource(n, seed, ...)``.
    Every scene shows sky, building, road, pavement, tree, car and pole; signs, fences and a small
    void patch (the far end of the street) appear in most.

    Raises:
        DatasetError: negative seed or an image smaller than 16 x 16.
    """
    _check_size(seed, height, width)
    return _Renderer(seed, height, width).render(_build_street(seed, 0.0), 0.0, 0.0)


class ProceduralSource(SourceBase):
    """A smooth procedural drive as a :class:`~demasked_ros.datasets.base.FrameSource`.

    The camera moves down the street at ``speed_mps`` and moving cars at their own lane speed, so
    consecutive frames differ a little (continuous motion, no flicker). Frame ``i`` is stamped
    ``start_ns + round(i * 1e9 / rate_hz)``.
    """

    def __init__(self, n_frames: int, seed: int = 0, height: int = 360, width: int = 480,
                 rate_hz: float = 15.0, *, speed_mps: float = 8.0, start_ns: int = 0) -> None:
        _check_size(seed, height, width)
        if n_frames < 1:
            raise DatasetError(f"n_frames must be >= 1, got {n_frames}")
        if not rate_hz > 0:
            raise DatasetError(f"rate_hz must be > 0, got {rate_hz}")
        self.n_frames, self.seed, self.height, self.width = n_frames, seed, height, width
        self.rate_hz, self.speed_mps, self.start_ns = float(rate_hz), float(speed_mps), int(start_ns)
        self._street: _Street | None = None
        self._renderer: _Renderer | None = None

    @property
    def class_info(self) -> ClassInfo:
        """CamVid's 11 classes, void 11."""
        return CAMVID

    def __len__(self) -> int:
        return self.n_frames

    def __repr__(self) -> str:
        return (f"ProceduralSource({self.n_frames}, seed={self.seed}, {self.width}x{self.height}, "
                f"{self.rate_hz} Hz)")

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_street"] = state["_renderer"] = None  # rebuilt lazily; keeps pickles small
        return state

    def frame(self, index: int) -> Frame:
        """Render frame ``index`` (0-based)."""
        if not 0 <= index < self.n_frames:
            raise DatasetError(f"frame {index} out of range 0..{self.n_frames - 1}")
        if self._street is None or self._renderer is None:
            length = self.speed_mps * (self.n_frames - 1) / self.rate_hz
            self._street = _build_street(self.seed, length)
            self._renderer = _Renderer(self.seed, self.height, self.width)
        time_s = index / self.rate_hz
        image, labels = self._renderer.render(self._street, self.speed_mps * time_s, time_s)
        stamp = self.start_ns + round(index * 1_000_000_000 / self.rate_hz)
        return Frame(index, stamp, image, labels, f"procedural_s{self.seed}_{index:06d}", "procedural")

    def iter_records(self, indices: Container[int] | None = None) -> Iterator[FrameRecord]:
        """Yield frames in order (rendering cannot fail, so never a FrameError)."""
        for index in range(self.n_frames):
            if indices is None or index in indices:
                yield self.frame(index)
