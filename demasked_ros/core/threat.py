"""The threat model: the size of the adversarial patch an attacker may place (paper, section 3.2).

An attacker replaces an arbitrary ``ph x pw`` rectangle lying fully inside the image with any
content. Everything the certifier guarantees is relative to this rectangle size, so it is resolved
once per image size and then fixes the mask geometry.
"""

from __future__ import annotations

import math

from demasked_ros.core.errors import CoreError

#: A patch given either as a fraction of the image area (square patch) or as explicit (ph, pw).
PatchSpec = float | tuple[int, int]


def patch_shape(height: int, width: int, spec: PatchSpec) -> tuple[int, int]:
    """Resolve ``spec`` to a patch size ``(ph, pw)`` in pixels for an ``height x width`` image.

    A float is a fraction of the image area: the patch is square with side
    ``ceil(sqrt(fraction * height * width))``, so it covers *at least* that fraction (rounding up
    keeps the certificate on the safe side). A pair is taken as ``(ph, pw)``.

    Raises:
        CoreError: for a non-positive image size, a fraction outside (0, 1], or a patch that does
            not fit inside the image.
    """
    _check_image_size(height, width)
    if isinstance(spec, bool):
        raise CoreError(f"patch spec must be a fraction or (ph, pw), got {spec!r}")
    if isinstance(spec, (int, float)) and not isinstance(spec, tuple):
        fraction = float(spec)
        if not (0.0 < fraction <= 1.0) or math.isnan(fraction):
            raise CoreError(f"patch fraction must be in (0, 1], got {spec!r}")
        patch = (_square_side(fraction * height * width),) * 2
    else:
        try:
            ph, pw = (int(v) for v in spec)
        except (TypeError, ValueError) as error:
            raise CoreError(f"patch spec must be a fraction or (ph, pw), got {spec!r}") from error
        if (ph, pw) != tuple(spec):
            raise CoreError(f"patch size must be whole pixels, got {spec!r}")
        patch = (ph, pw)
    ph, pw = patch
    if ph < 1 or pw < 1:
        raise CoreError(f"patch size must be at least 1x1 pixel, got {ph}x{pw}")
    if ph > height or pw > width:
        raise CoreError(
            f"a {ph}x{pw} patch does not fit in a {height}x{width} image "
            f"(spec {spec!r}); choose a smaller patch"
        )
    return patch


def _square_side(area: float) -> int:
    """Smallest integer side whose square covers ``area`` (area rounded to 1e-6 against float noise)."""
    area = round(area, 6)
    side = math.isqrt(math.ceil(area))
    while side * side < area:
        side += 1
    return max(side, 1)


def _check_image_size(height: int, width: int) -> None:
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise CoreError(f"image size must be positive whole pixels, got {height}x{width}")
