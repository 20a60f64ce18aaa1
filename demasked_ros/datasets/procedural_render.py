"""Projection of a procedural street (:mod:`~.procedural_street`) to an RGB image and exact labels.

Split from :mod:`demasked_ros.datasets.procedural`: a pinhole camera 1.5 m above the road paints the
street's polygons by painter's order (ground, facades, fences, then objects far to near) into the image
and, from the same polygons, the label map; then per-class screen-space noise and distance haze texture
the image. The noise fields are fixed per seed so that consecutive frames of a drive do not flicker.
"""

from __future__ import annotations

import cv2
import numpy as np

from demasked_ros.datasets.procedural_street import (
    _BACK_ROW_M,
    _FAR_M,
    PAVEMENT,
    ROAD,
    SKY,
    VOID,
    Polygon,
    _box_x,
    _car_shapes,
    _Shape,
    _Street,
)

_NEAR_M = 0.5
_CAMERA_HEIGHT_M = 1.5
_HAZE_RGB = np.array([205.0, 208.0, 212.0])
_SUBPIXEL_BITS = 4


def _clip_near_far(points: Polygon, camera_z: float) -> Polygon:
    """Clip a world polygon to the depth slab [near, far] in front of the camera (Sutherland-Hodgman)."""
    for bound, keep_above in ((_NEAR_M, True), (_FAR_M, False)):
        clipped: Polygon = []
        count = len(points)
        for i in range(count):
            a, b = points[i], points[(i + 1) % count]
            da, db = a[2] - camera_z - bound, b[2] - camera_z - bound
            inside_a = da >= 0 if keep_above else da <= 0
            inside_b = db >= 0 if keep_above else db <= 0
            if inside_a:
                clipped.append(a)
            if inside_a != inside_b:
                t = da / (da - db)
                clipped.append((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])))
        points = clipped
        if len(points) < 3:
            return []
    return points


class _Renderer:
    """Projects a street for one camera position into (RGB image, labels); textures fixed per seed."""

    def __init__(self, seed: int, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.focal = 0.87 * width  # about 60 degrees horizontal field of view
        rng = np.random.default_rng([seed, 9])
        self.fine = rng.normal(0.0, 1.0, (height, width)).astype(np.float32)
        self.medium = self._smooth_noise(rng, 8)
        self.coarse = self._smooth_noise(rng, 40)

    def _smooth_noise(self, rng: np.random.Generator, cell: int) -> np.ndarray:
        grid = rng.normal(0.0, 1.0, (self.height // cell + 2, self.width // cell + 2)).astype(np.float32)
        return np.asarray(cv2.resize(grid, (self.width, self.height), interpolation=cv2.INTER_CUBIC))

    def render(self, street: _Street, camera_z: float, time_s: float) -> tuple[np.ndarray, np.ndarray]:
        height, width = self.height, self.width
        horizon = street.horizon_frac * height
        rows = np.arange(height, dtype=np.float32)[:, None, None]
        top = np.asarray(street.sky_top, dtype=np.float32)
        blend = np.clip(rows / max(horizon, 1.0), 0.0, 1.0)
        canvas = np.broadcast_to(top * (1 - blend) + _HAZE_RGB.astype(np.float32) * blend,
                                 (height, width, 3)).copy()
        labels = np.full((height, width), SKY, dtype=np.uint8)
        edge = street.road_half + street.pavement + 2.0
        backdrop = _box_x(-edge - _BACK_ROW_M, edge + _BACK_ROW_M, -1.0, 12.0, camera_z + _FAR_M)
        self._paint(canvas, labels, _Shape(_FAR_M, VOID, (178.0, 180.0, 184.0), backdrop), street,
                    camera_z, horizon, haze=False)
        for shape in street.ground:
            self._paint(canvas, labels, shape, street, camera_z, horizon, haze=False)
        self._ground_haze(canvas, labels, street, horizon)
        cars = [s for x, z, speed, rgb in street.cars
                for s in _car_shapes(x, z + speed * time_s, rgb, street.camera_x)]
        for layer in (street.facades, street.fences, street.objects + cars):
            for shape in sorted(layer, key=lambda s: -s.depth):
                if shape.depth - camera_z > -5.0:
                    self._paint(canvas, labels, shape, street, camera_z, horizon, haze=True)
        image = self._texture(canvas, labels)
        return image, labels

    def _paint(self, canvas: np.ndarray, labels: np.ndarray, shape: _Shape, street: _Street,
               camera_z: float, horizon: float, *, haze: bool) -> None:
        points = _clip_near_far(shape.points, camera_z)
        if not points:
            return
        world = np.asarray(points, dtype=np.float64)
        depth = world[:, 2] - camera_z
        u = self.width / 2 + street.yaw_px + self.focal * (world[:, 0] - street.camera_x) / depth
        v = horizon + self.focal * (_CAMERA_HEIGHT_M - world[:, 1]) / depth
        if u.max() < 0 or u.min() >= self.width or v.max() < 0 or v.min() >= self.height:
            return
        # Depth >= 0.5 m and scene extents of tens of metres keep coordinates far inside int32 even
        # with sub-pixel bits; clamping them instead would bend polygon edges.
        pixels = np.stack([u, v], axis=1)
        polygon = np.round((pixels - 0.5) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        rgb = np.asarray(shape.rgb, dtype=np.float64)
        if haze:
            fog = 1.0 - float(np.exp(-float(depth.mean()) / 140.0))
            rgb = rgb * (1 - fog) + _HAZE_RGB * fog
        cv2.fillPoly(canvas, [polygon], tuple(float(c) for c in rgb), cv2.LINE_8, _SUBPIXEL_BITS)
        cv2.fillPoly(labels, [polygon], shape.label, cv2.LINE_8, _SUBPIXEL_BITS)

    def _ground_haze(self, canvas: np.ndarray, labels: np.ndarray, street: _Street, horizon: float) -> None:
        rows = np.arange(self.height, dtype=np.float32)
        below = np.maximum(rows + 0.5 - horizon, 1e-3)
        fog = (1.0 - np.exp(-(self.focal * _CAMERA_HEIGHT_M / below) / 140.0))[:, None, None]
        ground = np.isin(labels, (ROAD, PAVEMENT))[:, :, None]
        hazy = canvas * (1 - fog) + _HAZE_RGB.astype(np.float32) * fog
        np.copyto(canvas, hazy.astype(np.float32), where=ground)

    def _texture(self, canvas: np.ndarray, labels: np.ndarray) -> np.ndarray:
        #                         sky  bldg pole road pave tree sign fence car  -    -    void
        fine = np.asarray([0.005, 0.02, 0.03, 0.07, 0.06, 0.10, 0.02, 0.06, 0.02, 0.0, 0.0, 0.03],
                          dtype=np.float32)
        medium = np.asarray([0.0, 0.02, 0.02, 0.04, 0.08, 0.20, 0.01, 0.08, 0.02, 0.0, 0.0, 0.05],
                            dtype=np.float32)
        coarse = np.asarray([0.03, 0.03, 0.0, 0.05, 0.04, 0.15, 0.0, 0.03, 0.0, 0.0, 0.0, 0.05],
                            dtype=np.float32)
        gain = 1.0 + fine[labels] * self.fine + medium[labels] * self.medium + coarse[labels] * self.coarse
        shaded = cv2.GaussianBlur(canvas * gain[:, :, None], (3, 3), 0.6)
        return np.ascontiguousarray(np.clip(np.round(shaded), 0, 255).astype(np.uint8))
