"""The world a procedural seed draws: a straight street as coloured, labelled polygons in metres.

Split from :mod:`demasked_ros.datasets.procedural` so that the scene geometry (what is where, in which
colour and class) sits apart from its projection to pixels (:mod:`~.procedural_render`). Every random
draw here is keyed by ``(seed, stream)`` and consumed in a fixed order: changing the order or the
constants changes every rendered scene, and trained models depend on those scenes staying bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, VOID = 0, 1, 2, 3, 4, 5, 6, 7, 8, 11

#: Distance (m) beyond the last camera position that the street and the depth clip reach.
_FAR_M = 160.0
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
