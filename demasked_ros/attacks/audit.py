"""The certificate audit: re-certify every attacked frame with the product pipeline and compare.

Definitions (clean frame x, attacked frame x' that differs from x only inside the threat model):

* recovery: a **violation** is a pixel certified on x whose output label differs on x' (Theorem 1
  says there is none);
* detection: a **violation** is a pixel verified on both x and x' whose label differs (Theorem 2).

Any violation is an error: callers save the frame and the patch position for reproduction.

:class:`Recertifier` runs the product :class:`~demasked_ros.engines.certifier.Certifier` exactly as
the node does (``full``), or, for audits at scale, re-runs only the branches whose *masked input*
differs byte-wise from the clean frame's (``changed``); a branch with a byte-identical input gives
identical labels because inference is deterministic and a branch depends on its own input only
(soundness rules 2 and 3, tested in the engine tests). Aggregation then follows the Certifier's own
rule (core ``recover_with_margin`` with t = N x T, ``detect`` against a fresh f(x')). Audits that
use ``changed`` should spot-check it against ``full`` (``benchmarks/bench_audit.py`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from demasked_ros.attacks.errors import AttackError
from demasked_ros.core.certify import detect, recover_with_margin
from demasked_ros.core.masks import MaskSet
from demasked_ros.engines.certifier import CertificationResult, Certifier, StageClock, mask_images
from demasked_ros.engines.segmenters import check_labels

#: Violation positions kept per frame for reproduction.
MAX_POSITIONS = 20


def violation_map(mode: str, clean_labels: np.ndarray, clean_certified: np.ndarray,
                  attacked_labels: np.ndarray, attacked_certified: np.ndarray) -> np.ndarray:
    """H x W bool: the pixels whose certificate the attack broke (see the module docstring)."""
    changed = clean_labels != attacked_labels
    if mode == "recovery":
        return clean_certified & changed
    if mode == "detection":
        return clean_certified & attacked_certified & changed
    raise AttackError(f"unknown mode {mode!r}")


@dataclass
class AuditCounts:
    """Pixel counts of one (clean, attacked) pair."""

    mode: str
    pixels: int
    clean_certified: int
    attacked_certified: int
    changed: int
    violations: int
    uncertified_changed: int
    positions: list[list[int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)


def audit(clean: CertificationResult, attacked: CertificationResult) -> AuditCounts:
    """Compare the certified outputs of a clean and an attacked frame."""
    if clean.mode != attacked.mode or clean.labels.shape != attacked.labels.shape:
        raise AttackError("clean and attacked results come from different setups")
    broken = violation_map(clean.mode, clean.labels, clean.certified, attacked.labels, attacked.certified)
    changed = clean.labels != attacked.labels
    return AuditCounts(
        mode=clean.mode, pixels=int(changed.size), clean_certified=int(clean.certified.sum()),
        attacked_certified=int(attacked.certified.sum()), changed=int(changed.sum()),
        violations=int(broken.sum()), uncertified_changed=int((changed & ~clean.certified).sum()),
        positions=[[int(r), int(c)] for r, c in np.argwhere(broken)[:MAX_POSITIONS]])


class Recertifier:
    """Certifies attacked frames with a product :class:`Certifier`, fully or incrementally."""

    def __init__(self, certifier: Certifier) -> None:
        self.certifier = certifier

    @property
    def masks(self) -> MaskSet:
        """The certifier's mask set."""
        return self.certifier.masks

    def full(self, image: np.ndarray) -> CertificationResult:
        """Exactly what the node computes for ``image``."""
        return self.certifier.certify(image)

    def changed(self, clean_image: np.ndarray, clean: CertificationResult,
                attacked_image: np.ndarray) -> tuple[CertificationResult, int]:
        """Result for ``attacked_image`` re-running only branches whose masked input changed.

        Returns the result and the number of branches re-run.
        """
        masks = self.masks
        if clean.branch_labels.shape != (masks.k, *clean_image.shape[:2]):
            raise AttackError("the clean result does not come from this certifier")
        differs = np.flatnonzero(np.any(
            mask_images(clean_image, masks.visible) != mask_images(attacked_image, masks.visible),
            axis=(1, 2, 3)))
        branch_labels = clean.branch_labels.copy()
        if differs.size:
            subset = MaskSet(visible=masks.visible[differs], t=masks.t, mode=masks.mode,
                             patch=masks.patch, scheme=masks.scheme, n_patches=masks.n_patches,
                             band=masks.band)
            rerun = self.certifier.executor.run(attacked_image, subset, self.certifier.demasker,
                                                self.certifier.segmenter, StageClock())
            branch_labels[differs] = rerun
        if masks.mode == "recovery":
            labels, certified = recover_with_margin(branch_labels, masks.n_patches * masks.t)
        else:
            frame = attacked_image[None]
            segmenter = self.certifier.segmenter
            labels = check_labels(segmenter.segment(frame), frame, len(segmenter.class_names))[0]
            certified = detect(labels, branch_labels)
        return CertificationResult(labels=labels, certified=certified, branch_labels=branch_labels,
                                   mode=masks.mode), int(differs.size)
