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
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from demasked_ros.core.classes import CAMVID, ClassInfo
from demasked_ros.datasets.base import DatasetError, Frame, FrameRecord, SourceBase

SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, VOID = 0, 1, 2, 3, 4, 5, 6, 7, 8, 11

_NEAR_M = 0.5
_FAR_M = 160.0
_CAMERA_HEIGHT_M = 1.5
_HAZE_RGB = np.array([205.0, 208.0, 212.0])
_SUBPIXEL_BITS = 4
Polygon = list[tuple[float, float, float]]
_WALLS = [(150, 95, 80), (185, 170, 150), (120, 115, 110), (200, 190, 175)]
_BACK_ROW_M = 14.0
_SIGNS = [(200, 40, 40), (40, 70, 170), (230, 230, 230)]


@dataclass(frozen=True)
class _Shape:
    """A world-space polygon with its label and flat colour; ``depth`` orders painting (far first)."""

    depth: float
    label: int
    rgb: tuple[float, float, float]
    points: Polygon


@dataclass
class _Street:
    """Everything a seed draws; cars carry a speed so that a drive moves them."""

    road_half: float
    pavement: float
    horizon_frac: float
    camera_x: float
    yaw_px: float
    sky_top: tuple[float, float, float]
    ground: list[_Shape] = field(default_factory=list)
    facades: list[_Shape] = field(default_factory=list)
    fences: list[_Shape] = field(default_factory=list)
    objects: list[_Shape] = field(default_factory=list)
    cars: list[tuple[float, float, float, tuple[float, float, float]]] = field(default_factory=list)


def _rgb(rng: np.random.Generator, base: Sequence[float], spread: float) -> tuple[float, float, float]:
    values = np.clip(np.asarray(base, dtype=float) + rng.uniform(-spread, spread, 3), 0, 255)
    return (float(values[0]), float(values[1]), float(values[2]))


def _box_x(x0: float, x1: float, y0: float, y1: float, z: float) -> Polygon:
    """A rectangle facing the camera (constant z)."""
    return [(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)]


def _box_z(x: float, y0: float, y1: float, z0: float, z1: float) -> Polygon:
    """A rectangle along the street (constant x), e.g. a facade."""
    return [(x, y0, z0), (x, y0, z1), (x, y1, z1), (x, y1, z0)]


def _ground(x0: float, x1: float, z0: float, z1: float, y: float = 0.0) -> Polygon:
    return [(x0, y, z0), (x1, y, z0), (x1, y, z1), (x0, y, z1)]


def _disc(x: float, y: float, z: float, rx: float, ry: float, corners: int = 14) -> Polygon:
    angles = np.linspace(0.0, 2 * np.pi, corners, endpoint=False)
    return [(x + rx * float(np.cos(a)), y + ry * float(np.sin(a)), z) for a in angles]


def _build_street(seed: int, length_m: float) -> _Street:
    """Draw a street of ``length_m`` metres (plus the far margin) from ``seed``."""
    rng = np.random.default_rng([seed, 0])
    street = _Street(
        road_half=float(rng.uniform(4.0, 6.5)), pavement=float(rng.uniform(2.0, 3.8)),
        horizon_frac=float(rng.uniform(0.40, 0.48)), camera_x=float(rng.uniform(-2.0, 2.0)),
        yaw_px=float(rng.uniform(-25, 25)), sky_top=_rgb(rng, (200, 210, 225), 15),
    )
    end = length_m + _FAR_M
    half, edge = street.road_half, street.road_half + street.pavement
    asphalt = _rgb(rng, (92, 90, 96), 10)
    slabs = _rgb(rng, (150, 140, 132), 12)
    street.ground.append(_Shape(end, ROAD, asphalt, _ground(-half, half, -5.0, end)))
    for side in (-1.0, 1.0):
        street.ground.append(_Shape(end, PAVEMENT, slabs, _ground(side * half, side * edge, -5.0, end, 0.12)))
        kerb = _rgb(rng, (175, 172, 165), 6)
        kerb_top = _ground(side * half, side * (half + 0.25), -5.0, end, 0.13)
        street.ground.append(_Shape(end, PAVEMENT, kerb, kerb_top))
        street.ground.append(_Shape(end, PAVEMENT, kerb, _box_z(side * half, 0.0, 0.13, -5.0, end)))
    dash = float(rng.uniform(2.5, 4.0))
    for z in np.arange(-5.0, end, 3 * dash):
        street.ground.append(_Shape(end, ROAD, (222, 222, 214), _ground(-0.08, 0.08, z, z + dash, 0.01)))
    for side in (-1.0, 1.0):
        street.ground.append(_Shape(end, ROAD, (215, 215, 205),
                                    _ground(side * (half - 0.35), side * (half - 0.22), -5.0, end, 0.01)))
    _add_facades(street, seed, end, edge)
    _add_street_furniture(street, seed, end, half, edge)
    _add_cars(street, np.random.default_rng([seed, 5]), end, half)
    return street


def _add_facades(street: _Street, seed: int, end: float, edge: float) -> None:
    for side_index, side in enumerate((-1.0, 1.0)):
        # A second row of buildings and the ground before it fill the gaps between front buildings.
        rng = np.random.default_rng([seed, 6, side_index])
        back = side * (edge + _BACK_ROW_M)
        street.ground.append(_Shape(end, PAVEMENT, _rgb(rng, (140, 135, 128), 10),
                                    _ground(side * edge, back, -5.0, end, 0.12)))
        z = -5.0
        while z < end:
            width = float(rng.uniform(15.0, 40.0))
            wall = _rgb(rng, _WALLS[int(rng.integers(len(_WALLS)))], 25)
            street.facades.append(_Shape(10 * end + z + width, BUILDING, wall,
                                         _box_z(back, 0.0, float(rng.uniform(12.0, 28.0)), z, z + width)))
            z += width
        rng = np.random.default_rng([seed, 1, side_index])
        z = -5.0
        while z < end:
            width = float(rng.uniform(8.0, 22.0))
            height = float(rng.uniform(7.0, 22.0))
            x = side * (edge + float(rng.uniform(0.0, 1.2)))
            wall = _rgb(rng, _WALLS[int(rng.integers(len(_WALLS)))], 18)
            street.facades.append(_Shape(z + width, BUILDING, wall, _box_z(x, 0.0, height, z, z + width)))
            glass = _rgb(rng, (60, 66, 78), 12)
            spacing = float(rng.uniform(2.6, 3.6))
            for floor in np.arange(1.0, height - 1.5, 3.2):
                for wz in np.arange(z + 1.0, z + width - 1.5, spacing):
                    low, near = float(floor), float(wz)
                    pane = _box_z(x - side * 0.02, low, low + 1.6, near, near + 1.3)
                    street.facades.append(_Shape(z + width, BUILDING, glass, pane))
            z += width + (float(rng.uniform(0.5, 6.0)) if rng.random() < 0.3 else 0.0)


def _add_street_furniture(street: _Street, seed: int, end: float, half: float, edge: float) -> None:
    for side_index, side in enumerate((-1.0, 1.0)):
        rng = np.random.default_rng([seed, 2, side_index])
        # The first pole and tree of each side are near enough to be in every first frame.
        z = float(rng.uniform(10.0, 18.0))
        while z < end:
            x = side * (half + 0.5)
            pole_height = float(rng.uniform(5.0, 8.0))
            grey = _rgb(rng, (110, 112, 110), 15)
            street.objects.append(_Shape(z, POLE, grey, _box_x(x - 0.08, x + 0.08, 0.0, pole_height, z)))
            if rng.random() < 0.4:
                sign = _rgb(rng, _SIGNS[int(rng.integers(len(_SIGNS)))], 15)
                street.objects.append(_Shape(z - 0.05, SIGN, sign,
                                             _box_x(x - 0.35, x + 0.35, 2.4, 3.1, z - 0.05)))
            z += float(rng.uniform(15.0, 35.0))
        rng = np.random.default_rng([seed, 3, side_index])
        z = float(rng.uniform(18.0, 28.0))
        while z < end:
            x = side * (edge - 0.6)
            trunk = _rgb(rng, (80, 65, 50), 10)
            street.objects.append(_Shape(z, TREE, trunk, _box_x(x - 0.15, x + 0.15, 0.0, 3.0, z)))
            radius = float(rng.uniform(1.6, 3.0))
            leaves = _rgb(rng, (80, 105, 55), 18)
            street.objects.append(_Shape(z - 0.01, TREE, leaves,
                                         _disc(x, 3.0 + radius * 0.8, z, radius, radius * 0.9)))
            z += float(rng.uniform(9.0, 30.0))
        rng = np.random.default_rng([seed, 4, side_index])
        if rng.random() < 0.6:
            z0 = float(rng.uniform(25.0, 60.0))
            x = side * (edge - 0.1)
            street.fences.append(_Shape(z0, FENCE, _rgb(rng, (120, 110, 95), 15),
                                        _box_z(x, 0.1, 1.2, z0, z0 + float(rng.uniform(6, 20)))))


def _add_cars(street: _Street, rng: np.random.Generator, end: float, half: float) -> None:
    palette = [(150, 20, 25), (30, 50, 120), (215, 215, 215), (160, 162, 168), (25, 25, 28)]
    lane = half / 2
    # Cars in one lane share one speed, so they never drive through each other; parked cars stand.
    speeds = {-lane: float(rng.uniform(4.0, 9.0)), lane: float(rng.uniform(4.0, 9.0)),
              -(half - 1.1): 0.0, half - 1.1: 0.0}
    positions = list(speeds)
    # The first car is near enough to be seen in the first frame.
    z = float(rng.uniform(9.0, 20.0))
    while z < end:
        x = positions[int(rng.integers(len(positions)))]
        street.cars.append((x, z, speeds[x], _rgb(rng, palette[int(rng.integers(len(palette)))], 15)))
        z += float(rng.uniform(8.0, 30.0))


def _car_shapes(x: float, z: float, rgb: tuple[float, float, float], camera_x: float) -> list[_Shape]:
    """A car as a box: rear, the side facing the camera, rear window, lights, wheels."""
    x0, x1, length = x - 0.9, x + 0.9, 4.2
    shapes = []
    side_x = x0 if camera_x < x0 else x1 if camera_x > x1 else None
    if side_x is not None:
        darker = (0.8 * rgb[0], 0.8 * rgb[1], 0.8 * rgb[2])
        shapes.append(_Shape(z + 0.02, CAR, darker, _box_z(side_x, 0.25, 1.45, z, z + length)))
        for wheel_z in (z + 0.8, z + length - 0.8):
            rim = [(side_x, 0.33 + 0.33 * float(np.sin(a)), wheel_z + 0.33 * float(np.cos(a)))
                   for a in np.linspace(0.0, 2 * np.pi, 12, endpoint=False)]
            shapes.append(_Shape(z + 0.01, CAR, (20.0, 20.0, 22.0), rim))
    shapes.append(_Shape(z, CAR, rgb, _box_x(x0, x1, 0.25, 1.45, z)))
    shapes.append(_Shape(z - 0.001, CAR, (35, 40, 48), _box_x(x0 + 0.15, x1 - 0.15, 1.0, 1.4, z - 0.001)))
    for lx in (x0 + 0.1, x1 - 0.35):
        shapes.append(_Shape(z - 0.002, CAR, (180, 30, 30), _box_x(lx, lx + 0.25, 0.75, 0.9, z - 0.002)))
    for wx in (x0 + 0.05, x1 - 0.3):
        shapes.append(_Shape(z - 0.002, CAR, (20, 20, 22), _box_x(wx, wx + 0.25, 0.0, 0.3, z - 0.002)))
    return shapes


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
