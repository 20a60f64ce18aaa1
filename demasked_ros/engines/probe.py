"""Load-time probe: do a segmenter and a demasker treat each image of a batch independently?

Why: the certificate assumes that a branch's labels depend only on that branch's visible pixels
(soundness rule 2). The Certifier enforces the masking, but it runs the K branches as one batch,
and a user's model that normalises with batch statistics (BatchNorm left in training mode in a
traced TorchScript, an ONNX exported in training mode, a hand-written "normalise over the batch")
lets a patch that only branch 0 sees change branch 2's labels. The certificate is then wrong.

The probe runs each model on a few random frames and requires, bit for bit:

* determinism: the same batch twice gives the same output;
* isolation: changing one image of the batch (for the demasker: its *visible* pixels) leaves
  every other image's output unchanged;
* batch-size independence: an image alone gives the same output as in the batch;
* (demasker) masked pixels do not matter: changing them leaves the output unchanged.

A probe can only find a dependence that shows on its frames; it is a guard against the common
failure, not a proof. One branch per call (``chunk_size=1``) is sound whatever the model does with
its batch, which is why the Certifier can fall back to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.protocols import Demasker, Segmenter

#: Frame size, batch size and number of random frames the probe uses by default.
PROBE_SIZE = (64, 96)
PROBE_BATCH = 3
PROBE_FRAMES = 2


@dataclass(frozen=True)
class ProbeVerdict:
    """The outcome of :func:`probe_models`.

    Attributes:
        independent: True when every check passed.
        problems: one line per failed check (empty when independent).
        checks: how many comparisons were made.
    """

    independent: bool
    problems: tuple[str, ...]
    checks: int

    def describe(self) -> str:
        """One line for logs and diagnostics."""
        if self.independent:
            return f"batch probe passed ({self.checks} checks)"
        more = f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        return f"batch probe FAILED: {'; '.join(self.problems[:3])}{more}"

    def key_values(self) -> list[tuple[str, str]]:
        """Diagnostics entries."""
        return [("batch_probe", "passed" if self.independent else "failed"),
                ("batch_probe_detail", self.describe())]


def random_frames(count: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``count`` random RGB frames with structure: coarse colour blocks plus pixel noise."""
    height, width = size
    blocks = rng.integers(0, 256, size=(count, -(-height // 8), -(-width // 8), 3))
    coarse = np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2)[:, :height, :width]
    noise = rng.integers(-24, 25, size=(count, height, width, 3))
    return np.clip(coarse + noise, 0, 255).astype(np.uint8)


def random_visibility(count: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``count`` masks (True = visible), each hiding a different random band of columns."""
    height, width = size
    visible = np.ones((count, height, width), dtype=bool)
    for index in range(count):
        band = max(1, width // 4)
        start = int(rng.integers(0, width - band + 1))
        visible[index, :, start:start + band] = False
    return visible


def probe_models(segmenter: Segmenter, demasker: Demasker, size: tuple[int, int] = PROBE_SIZE,
                 batch: int = PROBE_BATCH, frames: int = PROBE_FRAMES, seed: int = 0) -> ProbeVerdict:
    """Probe both models (see the module docstring); the verdict lists every failed check.

    Raises:
        EngineError: a model that fails or returns malformed output on the probe frames.
    """
    if batch < 2 or frames < 1 or min(size) < 1:
        raise EngineError(f"probe needs batch >= 2, frames >= 1 and a positive size, got "
                          f"{batch}, {frames}, {size}")
    rng = np.random.default_rng(seed)
    problems: list[str] = []
    checks = 0
    for frame in range(frames):
        images = random_frames(batch, size, rng)
        visible = random_visibility(batch, size, rng)
        found, count = _probe_demasker(demasker, images, visible, rng)
        problems += [f"demasker: {p} (probe frame {frame})" for p in found]
        found, more = _probe_segmenter(segmenter, images, rng)
        problems += [f"segmenter: {p} (probe frame {frame})" for p in found]
        checks += count + more
    return ProbeVerdict(independent=not problems, problems=tuple(problems), checks=checks)


def _call(what: str, fn: object, *args: np.ndarray) -> np.ndarray:
    try:
        out = np.asarray(fn(*args))  # type: ignore[operator]
    except EngineError:
        raise
    except Exception as error:  # a user's model may raise anything
        raise EngineError(f"{what} failed during the batch probe: {type(error).__name__}: {error}") from error
    if out.shape[:1] != args[0].shape[:1]:
        raise EngineError(f"{what} returned {out.shape} for a batch of {args[0].shape[0]} in the probe")
    return out


def _differing(reference: np.ndarray, other: np.ndarray, skip: int) -> list[int]:
    return [i for i in range(len(reference)) if i != skip and not np.array_equal(reference[i], other[i])]


def _probe_segmenter(segmenter: Segmenter, images: np.ndarray,
                     rng: np.random.Generator) -> tuple[list[str], int]:
    problems: list[str] = []
    reference = _call("segmenter", segmenter.segment, images)
    if not np.array_equal(_call("segmenter", segmenter.segment, images), reference):
        problems.append("not deterministic: the same batch gave different labels")
    perturbations = (255 - images[0], np.zeros_like(images[0]),
                     rng.integers(0, 256, size=images[0].shape, dtype=np.uint8))
    for perturbed in perturbations:
        changed = images.copy()
        changed[0] = perturbed
        moved = _differing(reference, _call("segmenter", segmenter.segment, changed), skip=0)
        if moved:
            problems.append(f"labels of branches {moved} changed when only branch 0's input changed")
            break
    for index in range(len(images)):
        alone = _call("segmenter", segmenter.segment, images[index:index + 1])
        if not np.array_equal(alone[0], reference[index]):
            problems.append(f"branch {index} alone differs from the same branch in a batch")
            break
    return problems, 2 + len(perturbations) + len(images)


def _probe_demasker(demasker: Demasker, images: np.ndarray, visible: np.ndarray,
                    rng: np.random.Generator) -> tuple[list[str], int]:
    problems: list[str] = []
    masked = np.where(visible[..., None], images, np.uint8(0))
    reference = _call("demasker", demasker.demask, masked, visible)
    if not np.array_equal(_call("demasker", demasker.demask, masked, visible), reference):
        problems.append("not deterministic: the same batch gave different output")
    noisy = masked.copy()
    hidden = ~visible
    noisy[hidden] = rng.integers(0, 256, size=(int(hidden.sum()), 3), dtype=np.uint8)
    if not np.array_equal(_call("demasker", demasker.demask, noisy, visible), reference):
        problems.append("output depends on masked pixels")
    for perturbed in (255 - masked[0], rng.integers(0, 256, size=masked[0].shape, dtype=np.uint8)):
        changed = masked.copy()
        changed[0] = np.where(visible[0][..., None], perturbed, np.uint8(0))
        moved = _differing(reference, _call("demasker", demasker.demask, changed, visible), skip=0)
        if moved:
            problems.append(f"output of branches {moved} changed when only branch 0's visible pixels "
                            "changed")
            break
    for index in range(len(masked)):
        alone = _call("demasker", demasker.demask, masked[index:index + 1], visible[index:index + 1])
        if not np.array_equal(alone[0], reference[index]):
            problems.append(f"branch {index} alone differs from the same branch in a batch")
            break
    return problems, 5 + len(masked)
