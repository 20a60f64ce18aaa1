"""Mask sets for DEMASKED SMOOTHING (paper, section 4.1 and appendix B; Lemma 1 in appendix A).

Recovery masks split the image into blocks of exactly the patch size and make every block visible
in exactly one of K masks. A patch of the same size touches at most 2x2 blocks, so it can change at
most T of the K masked copies (T = 2 for columns/rows, 3 for "3-mask", 4 for "4-mask"); with
K >= 2*N*T + 1 and N patches, a unanimous vote cannot be overturned (Theorem 1).

Detection masks hide strided bands (Lemma 1): every possible patch position lies completely inside
the hidden band of at least one mask, so that branch is untouched by the attack (Theorem 2).

The masks depend only on the image size and the threat model, never on image content.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from demasked_ros.core.errors import CoreError
from demasked_ros.core.threat import PatchSpec, patch_shape

RecoveryScheme = Literal["column", "row", "3-mask", "4-mask"]
DetectionAxis = Literal["column", "row", "block"]

#: Proven bound on the masks one patch can affect, per recovery scheme (section 4.1).
RECOVERY_T: dict[str, int] = {"column": 2, "row": 2, "3-mask": 3, "4-mask": 4}
DETECTION_AXES: tuple[str, ...] = ("column", "row", "block")


@dataclass(frozen=True)
class MaskSet:
    """K binary masks for one image size and threat model.

    Attributes:
        visible: bool array ``K x H x W``; True where the pixel is kept, False where it is masked.
            Read-only, so a mask set can be shared between threads and frames.
        t: proven bound on the number of masks a single patch can affect. Recovery: the scheme's
            T. Detection: ``K - 1`` (the guarantee is that at least one mask hides the patch).
        mode: ``"recovery"`` or ``"detection"``.
        patch: the patch size ``(ph, pw)`` the set was built for.
        scheme: the recovery scheme or detection axis.
        n_patches: number of independent patches certified against (recovery only).
        band: detection band size ``(hidden rows, hidden columns)``; None for recovery.
    """

    visible: np.ndarray
    t: int
    mode: Literal["recovery", "detection"]
    patch: tuple[int, int]
    scheme: str
    n_patches: int = 1
    band: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        visible = np.ascontiguousarray(self.visible, dtype=bool)
        if visible.ndim != 3 or visible.shape[0] < 1:
            raise CoreError(f"masks must be K x H x W with K >= 1, got shape {visible.shape}")
        visible.setflags(write=False)
        object.__setattr__(self, "visible", visible)

    @property
    def k(self) -> int:
        """Number of masks, i.e. of branches per frame."""
        return int(self.visible.shape[0])

    @property
    def height(self) -> int:
        """Image height the masks were built for."""
        return int(self.visible.shape[1])

    @property
    def width(self) -> int:
        """Image width the masks were built for."""
        return int(self.visible.shape[2])

    @property
    def visible_fraction(self) -> np.ndarray:
        """Fraction of visible pixels in each mask (length K)."""
        return self.visible.reshape(self.k, -1).mean(axis=1)

    def describe(self) -> str:
        """One line for logs and reports."""
        ph, pw = self.patch
        return (
            f"{self.mode} {self.scheme}: K={self.k} T={self.t} patch={ph}x{pw} "
            f"N={self.n_patches} image={self.height}x{self.width}"
        )


def recovery_masks(
    height: int,
    width: int,
    patch: PatchSpec,
    scheme: str,
    n_patches: int = 1,
    k: int | None = None,
) -> MaskSet:
    """Build the certified-recovery masks of section 4.1 / appendix B.

    Args:
        height, width: image size in pixels.
        patch: patch fraction of the image area or explicit ``(ph, pw)``.
        scheme: ``"column"``, ``"row"``, ``"3-mask"`` or ``"4-mask"``.
        n_patches: number of independent patches N (appendix C: K >= 2*N*T + 1).
        k: number of masks; defaults to the smallest valid ``2*N*T + 1``.

    Blocks have exactly the patch size; the last block row/column is smaller when the image is not
    a multiple of the patch. Each block is visible in exactly one mask.
    """
    ph, pw = patch_shape(height, width, patch)
    if scheme not in RECOVERY_T:
        raise CoreError(f"unknown recovery scheme {scheme!r}; choose one of {sorted(RECOVERY_T)}")
    if int(n_patches) != n_patches or n_patches < 1:
        raise CoreError(f"n_patches must be a positive integer, got {n_patches!r}")
    t = RECOVERY_T[scheme]
    minimum_k = 2 * n_patches * t + 1
    k = minimum_k if k is None else int(k)
    if k < minimum_k:
        raise CoreError(
            f"{scheme} masks need K >= 2*N*T+1 = {minimum_k} for N={n_patches}, T={t}; got K={k}"
        )
    n_rows, n_cols = math.ceil(height / ph), math.ceil(width / pw)
    owner = _block_owner(n_rows, n_cols, scheme, k)
    pixel_owner = np.repeat(np.repeat(owner, ph, axis=0), pw, axis=1)[:height, :width]
    visible = pixel_owner[None, :, :] == np.arange(k)[:, None, None]
    return MaskSet(visible=visible, t=t, mode="recovery", patch=(ph, pw), scheme=scheme,
                   n_patches=int(n_patches))


def _block_owner(n_rows: int, n_cols: int, scheme: str, k: int) -> np.ndarray:
    """Index of the mask in which each block is visible (the paper's mapping mu)."""
    rows = np.arange(n_rows)[:, None]
    cols = np.arange(n_cols)[None, :]
    if scheme == "column":
        return np.broadcast_to(cols % k, (n_rows, n_cols)).copy()
    if scheme == "row":
        return np.broadcast_to(rows % k, (n_rows, n_cols)).copy()
    if scheme == "3-mask":
        return _three_mask_owner(n_rows, n_cols, k)
    # 4-mask: any assignment gives T = 4; shift each block row by ~sqrt(K) so that every
    # neighbourhood of about sqrt(K) x sqrt(K) blocks holds all K masks (uniform coverage).
    shift = math.isqrt(k - 1) + 1
    return (rows * shift + cols) % k


def _three_mask_owner(n_rows: int, n_cols: int, k: int) -> np.ndarray:
    """Appendix B's 3-mask: pairs of blocks share a mask, pair boundaries alternate by row parity.

    Even rows (0-based) group columns as {0}, {1,2}, {3,4}, ...; odd rows as {0,1}, {2,3}, ...
    For any two horizontally adjacent blocks, exactly one of two consecutive rows puts them in the
    same group, so any 2x2 block neighbourhood spans at most 3 masks. The mask counter runs on
    across rows and wraps around at K.
    """
    owner = np.empty((n_rows, n_cols), dtype=np.int64)
    cols = np.arange(n_cols)
    counter = 0
    for row in range(n_rows):
        groups = (cols + 1) // 2 if row % 2 == 0 else cols // 2
        owner[row] = (counter + groups) % k
        counter += int(groups[-1]) + 1
    return owner


def detection_masks(
    height: int,
    width: int,
    patch: PatchSpec,
    axis: str,
    k: int | None = None,
    mask_width: int | tuple[int, int] | None = None,
) -> MaskSet:
    """Build certified-detection masks: strided hidden bands (Lemma 1).

    Each mask hides one band of width ``W'' >= W'`` (the patch width along the axis); bands of
    adjacent masks are ``W'' - W' + 1`` apart and the last band is aligned to the image edge, so
    every patch position is fully hidden by some mask.

    Args:
        axis: ``"column"`` (vertical bands), ``"row"`` (horizontal bands) or ``"block"`` (a grid
            of hidden rectangles; K grows quadratically with the resolution).
        k: target number of masks; the band is made just wide enough (the actual K may be smaller).
        mask_width: band width ``W''`` in pixels (for ``"block"``: an int for both sides or a
            ``(rows, cols)`` pair). Give at most one of ``k`` and ``mask_width``. With neither,
            the band is twice the patch side along the axis.
    """
    ph, pw = patch_shape(height, width, patch)
    if axis not in DETECTION_AXES:
        raise CoreError(f"unknown detection axis {axis!r}; choose one of {list(DETECTION_AXES)}")
    if k is not None and mask_width is not None:
        raise CoreError("give either k or mask_width for detection masks, not both")
    if k is not None and (int(k) != k or k < 1):
        raise CoreError(f"k must be a positive integer, got {k!r}")
    if axis == "column":
        band_w = _band_size(width, pw, None if k is None else int(k), _single_width(mask_width))
        starts = _band_starts(width, pw, band_w)
        visible = np.ones((len(starts), height, width), dtype=bool)
        for index, start in enumerate(starts):
            visible[index, :, start:start + band_w] = False
        band = (height, band_w)
    elif axis == "row":
        band_h = _band_size(height, ph, None if k is None else int(k), _single_width(mask_width))
        starts = _band_starts(height, ph, band_h)
        visible = np.ones((len(starts), height, width), dtype=bool)
        for index, start in enumerate(starts):
            visible[index, start:start + band_h, :] = False
        band = (band_h, width)
    else:
        per_axis = None if k is None else max(1, math.isqrt(int(k)))
        rows_w, cols_w = _pair(mask_width)
        band_h = _band_size(height, ph, per_axis, rows_w)
        band_w = _band_size(width, pw, per_axis, cols_w)
        row_starts = _band_starts(height, ph, band_h)
        col_starts = _band_starts(width, pw, band_w)
        visible = np.ones((len(row_starts) * len(col_starts), height, width), dtype=bool)
        for index, (r0, c0) in enumerate((r, c) for r in row_starts for c in col_starts):
            visible[index, r0:r0 + band_h, c0:c0 + band_w] = False
        band = (band_h, band_w)
    return MaskSet(visible=visible, t=visible.shape[0] - 1, mode="detection", patch=(ph, pw),
                   scheme=axis, band=band)


def _single_width(mask_width: int | tuple[int, int] | None) -> int | None:
    if isinstance(mask_width, tuple):
        raise CoreError("a (rows, cols) mask_width is only valid for block detection masks")
    return mask_width


def _pair(mask_width: int | tuple[int, int] | None) -> tuple[int | None, int | None]:
    if mask_width is None or isinstance(mask_width, tuple):
        return (None, None) if mask_width is None else (mask_width[0], mask_width[1])
    return mask_width, mask_width


def _band_size(extent: int, patch: int, k: int | None, band: int | None) -> int:
    """Band width along one axis from an explicit width, a target K, or the default 2 x patch."""
    if band is not None:
        if int(band) != band or band < patch:
            raise CoreError(f"band width must be an integer >= the patch side {patch}, got {band!r}")
        if band > extent:
            raise CoreError(f"band width {band} exceeds the image extent {extent}")
        return int(band)
    if k is not None:
        # K bands with stride (band - patch + 1) reach the far edge when
        # (K - 1) * (band - patch + 1) + band >= extent.
        needed = math.ceil((extent + (k - 1) * (patch - 1)) / k)
        return min(extent, max(patch, needed))
    return min(extent, 2 * patch)


def _band_starts(extent: int, patch: int, band: int) -> list[int]:
    """Start offsets of the hidden bands: stride ``band - patch + 1``, last band on the edge."""
    stride = band - patch + 1
    starts = list(range(0, extent - band + 1, stride))
    if starts[-1] != extent - band:
        starts.append(extent - band)
    return starts
