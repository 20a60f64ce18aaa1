"""The certification spec: the one place that decides mode, masks, patch and working resolution.

Why one object: the node's parameters, the evaluator's configurations and ``demasked-certify`` all
describe the same thing (which threat model is certified, with which masks, at which resolution).
:class:`CertSpec` validates it once, raising :class:`CoreError` with the parameter's name, and is
the only way any of them gets a :class:`~demasked_ros.core.masks.MaskSet` (:meth:`CertSpec.masks`)
or the one-line summary logs and reports print (:meth:`CertSpec.describe`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from demasked_ros.core.errors import CoreError
from demasked_ros.core.masks import DETECTION_AXES, RECOVERY_T, MaskSet, detection_masks, recovery_masks
from demasked_ros.core.masks_drs import drs_column_masks, drs_parameters_for_width
from demasked_ros.core.threat import PatchSpec, patch_shape

MODES = ("recovery", "detection")
#: De-Randomized Smoothing baselines (appendix G), recovery only: ``drs-s`` solid fill, ``drs-e``
#: demasked. Their masks are column bands of width ``drs_width`` every ``drs_stride`` pixels.
DRS_SCHEMES = ("drs-s", "drs-e")
#: Interpolations a working-resolution resize may use (see ``engines.resizing.FrameResizer``).
RESIZE_INTERPOLATIONS = ("area", "linear", "nearest")
#: Default patch per mode where a caller has none (the paper's Table 1 choices).
DEFAULT_PATCH = {"recovery": 0.005, "detection": 0.01}


def schemes_for(mode: str, drs: bool = False) -> tuple[str, ...]:
    """The mask schemes valid in ``mode`` (``drs`` adds the DRS baselines to recovery)."""
    if mode == "recovery":
        return (*sorted(RECOVERY_T), *(DRS_SCHEMES if drs else ()))
    return DETECTION_AXES


def parse_patch(text: str) -> PatchSpec:
    """``0.005`` (fraction of the image area) or ``30x40`` (height x width in pixels).

    Raises:
        CoreError: text that is neither (the range is checked by :class:`CertSpec`).
    """
    try:
        if "x" in text.lower():
            height, width = text.lower().split("x")
            return (int(height), int(width))
        return float(text)
    except ValueError as error:
        raise CoreError(f"patch must be a fraction like 0.005 or HxW like 30x30, got {text!r}") from error


def normalise_patch(patch: Any) -> PatchSpec:
    """A fraction in (0, 1] as float, or a pixel patch as ``(ph, pw)`` ints; CoreError otherwise."""
    if isinstance(patch, (list, tuple)):
        if len(patch) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in patch):
            raise CoreError(f"a pixel patch must be [height, width] integers, got {patch!r}")
        if patch[0] < 1 or patch[1] < 1:
            raise CoreError(f"patch size must be at least 1x1 pixel, got {patch[0]}x{patch[1]}")
        return (int(patch[0]), int(patch[1]))
    if isinstance(patch, bool) or not isinstance(patch, (int, float)):
        raise CoreError(f"patch must be an area fraction or [height, width], got {patch!r}")
    fraction = float(patch)
    if not 0.0 < fraction <= 1.0 or math.isnan(fraction):
        raise CoreError(f"patch fraction must be in (0, 1] (0.005 = 0.5 %), got {patch!r}")
    return fraction


def patch_label(patch: PatchSpec) -> str:
    """``0.5 %`` or ``30x30 px`` for reports."""
    if isinstance(patch, tuple):
        return f"{patch[0]}x{patch[1]} px"
    return f"{100 * patch:g} %"


def resolve_working_size(requested: tuple[int, int] | None,
                         frame_hw: tuple[int, int]) -> tuple[int, int] | None:
    """The working size for a ``frame_hw`` camera frame; None to certify at the camera size.

    ``requested`` is ``(working_height, working_width)``; a 0 there follows the frame's aspect
    ratio (rounded, at least 1). A working size equal to the frame is the camera size (None).

    Raises:
        CoreError: a working size larger than the frame (resizing up only costs time).
    """
    if requested is None:
        return None
    frame_height, frame_width = frame_hw
    height, width = requested
    if height == 0:
        height = max(1, (2 * frame_height * width + frame_width) // (2 * frame_width))
    if width == 0:
        width = max(1, (2 * frame_width * height + frame_height) // (2 * frame_height))
    if height > frame_height or width > frame_width:
        raise CoreError(f"working size {height}x{width} is larger than the {frame_height}x"
                        f"{frame_width} frame; working_height/working_width must not exceed "
                        "the camera size (resizing up only costs time)")
    if (height, width) == (frame_height, frame_width):
        return None
    return height, width


def _positive(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise CoreError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class CertSpec:
    """What is certified: mode, mask scheme, threat model (patch, n_patches), K, and resolution.

    Attributes:
        mode: ``recovery`` (majority vote) or ``detection`` (f(x), verified where all K agree).
        scheme: recovery column/row/3-mask/4-mask (or a DRS baseline), detection column/row/block.
        patch: fraction of the image area (square patch) or ``(ph, pw)`` pixels, at the camera size.
        n_patches: independent patches N (recovery; K >= 2*N*T+1).
        k: number of masks (None: the smallest sound value).
        band_width: detection band width in working pixels (None: twice the patch side).
        drs_width, drs_stride: DRS band width / stride (None: the paper's, scaled to the width).
        working_size: ``(height, width)`` frames are resized to before masking (0 follows the
            aspect ratio; None certifies at the camera size), with ``interpolation``.

    Raises:
        CoreError: naming the parameter, for any value that is invalid on its own or together.
    """

    mode: str = "recovery"
    scheme: str = "column"
    patch: PatchSpec = 0.005
    n_patches: int = 1
    k: int | None = None
    band_width: int | None = None
    drs_width: int | None = None
    drs_stride: int | None = None
    working_size: tuple[int, int] | None = None
    interpolation: str = "area"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise CoreError(f"mode {self.mode!r} is not one of {list(MODES)}")
        allowed = list(schemes_for(self.mode, drs=True))
        if self.scheme not in allowed:
            raise CoreError(f"unknown {self.mode} scheme: scheme {self.scheme!r} is not valid in "
                            f"{self.mode} mode; choose one of {allowed}")
        object.__setattr__(self, "patch", normalise_patch(self.patch))
        for name in ("n_patches", "k", "band_width", "drs_width", "drs_stride"):
            _positive(name, getattr(self, name))
        if self.mode == "detection" and self.n_patches != 1:
            raise CoreError("n_patches > 1 is only supported in recovery mode")
        if self.scheme in DRS_SCHEMES and self.n_patches != 1:
            raise CoreError(f"n_patches > 1 is not supported with the {self.scheme} scheme: DRS column masks "
                            "and their vote margin bound a single patch")
        if self.mode == "recovery" and self.band_width is not None:
            raise CoreError("band_width applies to detection mode only")
        if self.k is not None and self.band_width is not None:
            raise CoreError("give either k or band_width, not both")
        if self.mode == "recovery" and self.k is not None and self.scheme in RECOVERY_T:
            minimum = 2 * self.n_patches * RECOVERY_T[self.scheme] + 1
            if self.k < minimum:
                raise CoreError(f"k = {self.k} is too small for {self.scheme} masks with n_patches = "
                                f"{self.n_patches}: K must be >= 2*N*T+1 = {minimum}")
        if self.working_size is not None:
            if len(self.working_size) != 2 or any(n < 0 for n in self.working_size) or \
                    not any(self.working_size):
                raise CoreError(f"working_size must be (height, width) with 0 = follow the aspect "
                                f"ratio, got {self.working_size!r}")
            object.__setattr__(self, "working_size", tuple(int(n) for n in self.working_size))
        if self.interpolation not in RESIZE_INTERPOLATIONS:
            raise CoreError(f"interpolation {self.interpolation!r} is not one of "
                            f"{list(RESIZE_INTERPOLATIONS)}")

    def patch_px(self, height: int, width: int) -> tuple[int, int]:
        """The threat model's patch in pixels of a ``height x width`` frame (CoreError if it does not fit)."""
        return patch_shape(height, width, self.patch)

    def working_hw(self, height: int, width: int) -> tuple[int, int] | None:
        """The working size for a ``height x width`` frame; None to certify at the frame's size."""
        return resolve_working_size(self.working_size, (height, width))

    def check_frame(self, height: int, width: int) -> None:
        """Raise CoreError now when this spec cannot certify a ``height x width`` frame."""
        self.patch_px(height, width)
        self.working_hw(height, width)

    def masks(self, height: int, width: int, patch: tuple[int, int] | None = None) -> MaskSet:
        """The mask set for a ``height x width`` image (the working size, when there is one).

        ``patch`` replaces the spec's patch with explicit pixels at this size: the widened patch
        when certifying at a working resolution.
        """
        spec = self.patch if patch is None else patch
        if self.scheme in DRS_SCHEMES:
            band, stride = drs_parameters_for_width(width)
            return drs_column_masks(height, width, spec, self.drs_width or band, self.drs_stride or stride)
        if self.mode == "recovery":
            return recovery_masks(height, width, spec, self.scheme, n_patches=self.n_patches, k=self.k)
        return detection_masks(height, width, spec, self.scheme, k=self.k, mask_width=self.band_width)

    def with_patch(self, patch: PatchSpec) -> CertSpec:
        """The same spec for another patch."""
        return replace(self, patch=patch)

    def describe(self) -> str:
        """The one-line summary logs and reports print."""
        parts = [f"mode={self.mode}", f"scheme={self.scheme}", f"patch={self.patch}",
                 f"k={self.k or 'auto'}"]
        if self.n_patches != 1:
            parts.append(f"n_patches={self.n_patches}")
        if self.band_width is not None:
            parts.append(f"band_width={self.band_width}")
        if self.drs_width is not None or self.drs_stride is not None:
            parts.append(f"drs={self.drs_width or 'auto'}/{self.drs_stride or 'auto'}")
        working = ("native" if self.working_size is None else
                   "x".join(str(n or "auto") for n in self.working_size) + f" ({self.interpolation})")
        parts.append(f"working={working}")
        return " ".join(parts)
