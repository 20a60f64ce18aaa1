"""Per-frame work of ``demasked-attack`` / ``demasked-calibrate``: attack, re-certify, audit, score.

An :class:`AttackSpec` is the picklable recipe; each worker (in-process, local processes or Ray,
through :mod:`demasked_ros.apps.evaluate.parallel`) builds one :class:`AttackWorker` with its own
models. For every frame the worker certifies the clean frame with the product ONNX ``Certifier``,
then for each placement builds the attacked frame (noise, natural crop, PGD on f, or the adaptive
attack through the branches), re-certifies it with the same ``Certifier``, audits the pair and
scores both frames with the patch alarm. One JSONL record per (frame, placement).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demasked_ros.apps.evaluate.config import EvalConfig
from demasked_ros.apps.evaluate.engines import EngineFactory
from demasked_ros.apps.evaluate.runner import ConfigOutcome, FrameOutcome, error_record
from demasked_ros.attacks.audit import Recertifier, audit
from demasked_ros.attacks.baselines import natural_contents, noise_contents
from demasked_ros.attacks.placement import Placement, grid_placements, paste, random_placement, worst_of
from demasked_ros.core.alarm import (
    AlarmCalibration,
    AlarmGeometry,
    AlarmParams,
    patch_evidence,
)
from demasked_ros.core.metrics import confusion_matrix
from demasked_ros.datasets.base import Frame, FrameError, FrameRecord, FrameSource
from demasked_ros.engines.certifier import Certifier

ATTACKS = ("none", "random", "natural", "pgd", "adaptive")
PLACEMENTS = ("random", "grid", "worst-of")


@dataclass(frozen=True)
class AttackSpec:
    """Everything a worker needs (picklable)."""

    config: EvalConfig
    attack: str = "pgd"
    steps: int = 100
    restarts: int = 1
    targeted: str | None = None
    target_mode: str = "erase"
    placement: str = "random"
    candidates: int = 8
    placements_per_frame: int = 1
    hold: int = 1
    seed: int = 0
    recertify: str = "full"
    branch_sample: int | None = None
    device: str = "cpu"
    factory: EngineFactory = field(default_factory=EngineFactory)
    num_classes: int = 11
    ignore_index: int = 11
    calibration: AlarmCalibration | None = None
    alarm_params: AlarmParams = field(default_factory=AlarmParams)
    out_dir: str | None = None
    save_attacked: bool = False
    save_branches: bool = False
    keep_positions: bool = False  # clean per-position alarm scores in the record (temporal calibration)
    donors: FrameSource | None = None
    donor_indices: tuple[int, ...] = ()

    def build(self) -> AttackWorker:
        """A fresh worker (models load lazily, once)."""
        return AttackWorker(self)


class AttackWorker:
    """Builds models once; :meth:`evaluate` handles one frame (the executors' worker contract)."""

    def __init__(self, spec: AttackSpec) -> None:
        self.spec = spec
        self._certifiers: dict[tuple[int, int], tuple[Recertifier, AlarmGeometry]] = {}
        self._pipeline: Any = None
        self._twin_checked = False
        self._donors: list[np.ndarray] | None = None

    def setup(self, height: int, width: int) -> tuple[Recertifier, AlarmGeometry]:
        """The product certifier and alarm geometry for this frame size (cached)."""
        if (height, width) not in self._certifiers:
            config = self.spec.config
            certifier = Certifier(self.spec.factory.segmenter(config.segmenter),
                                  self.spec.factory.demasker(config.demasker), config.masks(height, width))
            self._certifiers[height, width] = (Recertifier(certifier),
                                               AlarmGeometry(certifier.masks, self.spec.alarm_params))
        return self._certifiers[height, width]

    def pipeline(self) -> Any:
        """The torch twins (loaded on first use: only pgd/adaptive need torch)."""
        if self._pipeline is None:
            import torch

            from demasked_ros.attacks.torch_models import TorchPipeline

            torch.set_num_threads(1)
            config = self.spec.config
            self._pipeline = TorchPipeline.for_models(config.segmenter, config.demasker, self.spec.device,
                                                      need_demasker=self.spec.attack == "adaptive")
        return self._pipeline

    def evaluate(self, record: FrameRecord, jobs: Iterable[str], keep_arrays: bool = False) -> FrameOutcome:
        """Attack ``record`` at each placement id in ``jobs`` (``"p0"``, ``"p1"``, ...)."""
        base = {"index": record.index, "frame": record.name, "stamp_ns": record.stamp_ns}
        results: dict[str, ConfigOutcome] = {}
        if isinstance(record, FrameError):
            for job in jobs:
                results[job] = ConfigOutcome(error_record(base, job, record.message))
            return FrameOutcome(record.index, record.name, record.stamp_ns, results)
        clean_state: dict[str, Any] = {}
        for job in jobs:
            try:
                results[job] = ConfigOutcome(self._attack(record, int(job[1:]), base, job, clean_state))
            except Exception as error:  # any failure is this frame's error record; the run goes on
                results[job] = ConfigOutcome(error_record(base, job, f"{type(error).__name__}: {error}"))
        return FrameOutcome(record.index, record.name, record.stamp_ns, results)

    def _attack(self, frame: Frame, number: int, base: dict[str, Any], job: str,
                clean_state: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        spec, image = self.spec, frame.image
        height, width = image.shape[:2]
        recertifier, geometry = self.setup(height, width)
        segmenter = recertifier.certifier.segmenter
        if not clean_state:
            clean_state["result"] = recertifier.full(image)
            clean_state["f"] = segmenter.segment(image[None])[0]
            clean_state["score"] = patch_evidence(clean_state["result"].branch_labels,
                                                  clean_state["result"].labels, geometry)
        clean, f_clean, clean_score = clean_state["result"], clean_state["f"], clean_state["score"]
        record: dict[str, Any] = {**base, "config": job, "status": "ok", "attack": spec.attack,
                                  "clean_score": clean_score.score, "clean_roi": clean_score.roi,
                                  "clean_certified_fraction": clean.certified_fraction}
        if spec.calibration is not None:
            record["clean_alarm"] = spec.calibration.alarmed(clean_score.score)
        if spec.keep_positions:
            record["clean_positions"] = [round(float(v), 5) for v in clean_score.positions]
        if spec.attack == "none":
            return record
        rng = np.random.default_rng([spec.seed, frame.index, number])
        # --hold N (a sequence attack): N consecutive frames share the patch position, as a patch
        # fixed in the scene stays put between video frames; the contents are optimised per frame.
        where = rng if spec.hold == 1 else np.random.default_rng([spec.seed, frame.index // spec.hold,
                                                                  number, 1])
        placement = self._placement(where, frame, number, recertifier.masks.patch, f_clean)
        contents, loss = self._contents(rng, image, placement, clean, f_clean, recertifier)
        attacked = paste(image, placement, contents)
        f_attacked = segmenter.segment(attacked[None])[0]
        if spec.recertify == "changed":
            result, rerun = recertifier.changed(image, clean, attacked)
        else:
            result, rerun = recertifier.full(attacked), recertifier.masks.k
        counts = audit(clean, result)
        score = patch_evidence(result.branch_labels, result.labels, geometry)
        region = placement.region(height, width)
        record.update(
            placement=placement.to_json(), loss=loss, branches_rerun=rerun,
            f_changed_pct=100.0 * float((f_clean != f_attacked).mean()),
            f_changed_outside_pct=100.0 * float(((f_clean != f_attacked) & ~region).mean()),
            audit=counts.to_json(), score=score.score, roi=score.roi,
            roi_hit=bool(score.roi is not None and _overlaps(score.roi, placement)),
            certified_fraction=result.certified_fraction, seconds=time.perf_counter() - started)
        if spec.calibration is not None:
            record["alarm"] = spec.calibration.alarmed(score.score)
        if frame.labels is not None:
            record["confusion_clean"] = _sparse(f_clean, frame.labels, spec)
            record["confusion_attacked"] = _sparse(f_attacked, frame.labels, spec)
        if spec.out_dir is not None and (counts.violations or spec.save_attacked):
            self._save(frame, number, image, attacked, placement, counts.violations)
        if spec.out_dir is not None and spec.save_branches:  # for re-scoring the alarm offline
            folder = Path(spec.out_dir) / "branches"
            folder.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(folder / f"{frame.index:06d}_p{number}.npz",
                                clean_branches=clean.branch_labels.astype(np.uint8),
                                clean_labels=clean.labels.astype(np.uint8), clean_certified=clean.certified,
                                branches=result.branch_labels.astype(np.uint8),
                                labels=result.labels.astype(np.uint8), certified=result.certified,
                                placement=np.array(placement.to_json()))
        return record

    def _placement(self, rng: np.random.Generator, frame: Frame, number: int, patch: tuple[int, int],
                   f_clean: np.ndarray) -> Placement:
        spec, (height, width) = self.spec, frame.image.shape[:2]
        if spec.placement == "grid":
            grid = grid_placements(height, width, patch)
            return grid[(frame.index * spec.placements_per_frame + number) % len(grid)]
        if spec.placement == "worst-of":
            candidates = [random_placement(rng, height, width, patch, spec.config.n_patches)
                          for _ in range(spec.candidates)]
            segmenter = self.setup(height, width)[0].certifier.segmenter

            def damage(candidate: Placement) -> float:  # f's damage from a noise patch: cheap proxy
                noisy = paste(frame.image, candidate, noise_contents(rng, candidate))
                return float((segmenter.segment(noisy[None])[0] != f_clean).sum())

            return worst_of(candidates, damage)[0]
        return random_placement(rng, height, width, patch, spec.config.n_patches)

    def _contents(self, rng: np.random.Generator, image: np.ndarray, placement: Placement, clean: Any,
                  f_clean: np.ndarray, recertifier: Recertifier) -> tuple[list[np.ndarray], float | None]:
        spec = self.spec
        if spec.attack == "random":
            return noise_contents(rng, placement), None
        if spec.attack == "natural":
            return natural_contents(rng, placement, self.donors(image)), None
        from demasked_ros.attacks import adaptive, pgd
        from demasked_ros.attacks.torch_models import class_index

        pipe = self.pipeline()
        if not self._twin_checked:  # the twin must be the product's model, or the attack aims elsewhere
            pipe.check_twin(image, f_clean)
            self._twin_checked = True
        config = pgd.PGDConfig(steps=spec.steps, restarts=spec.restarts, seed=int(rng.integers(1 << 31)))
        masks = recertifier.masks
        if spec.attack == "adaptive":
            objective = (adaptive.recovery_objective(pipe, masks, placement, image, clean.labels,
                                                     clean.certified, spec.branch_sample, config.seed)
                         if masks.mode == "recovery" else
                         adaptive.detection_objective(pipe, masks, placement, image, clean.labels,
                                                      clean.branch_labels, spec.branch_sample, config.seed))
        elif spec.targeted is not None:
            names = recertifier.certifier.segmenter.class_names
            cls = class_index(names, spec.targeted)
            objective = (pgd.erase_class(pipe, f_clean, cls) if spec.target_mode == "erase"
                         else pgd.paint_class(pipe, f_clean, cls))
        else:
            objective = pgd.untargeted(pipe, f_clean)
        result = pgd.optimise_patch(pipe, image, placement, objective, config)
        return result.contents, result.loss

    def donors(self, image: np.ndarray) -> list[np.ndarray]:
        """Donor frames for natural patches (the spec's donor frames, else the frame mirrored)."""
        if self._donors is None:
            self._donors = []
            if self.spec.donors is not None:
                wanted = set(self.spec.donor_indices)
                records = self.spec.donors.iter_records(wanted)
                self._donors = [r.image for r in records if isinstance(r, Frame)]
        return self._donors or [image[::-1, ::-1].copy()]

    def _save(self, frame: Frame, number: int, image: np.ndarray, attacked: np.ndarray,
              placement: Placement, violations: int) -> None:
        import cv2

        assert self.spec.out_dir is not None
        folder = Path(self.spec.out_dir) / ("violations" if violations else "attacked")
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{frame.index:06d}_p{number}"
        cv2.imwrite(str(folder / f"{stem}.png"), cv2.cvtColor(attacked, cv2.COLOR_RGB2BGR))
        if violations:  # everything needed to reproduce: both frames and the patch position
            np.savez_compressed(folder / f"{stem}.npz", clean=image, attacked=attacked,
                                placement=np.array(placement.to_json()))


def _overlaps(roi: tuple[int, int, int, int], placement: Placement) -> bool:
    y, x, h, w = roi
    return any(y < py + ph and py < y + h and x < px + pw and px < x + w
               for py, px, ph, pw in placement.boxes)


def _sparse(prediction: np.ndarray, truth: np.ndarray, spec: AttackSpec) -> list[list[int]]:
    confusion = confusion_matrix(prediction, truth, spec.num_classes,
                                 (truth != spec.ignore_index) & (truth < spec.num_classes))
    rows, cols = np.nonzero(confusion)
    return [[int(r), int(c), int(confusion[r, c])] for r, c in zip(rows, cols, strict=True)]
