"""CamVid loading and augmentation for training the default models.

Why in memory: the train split is 367 frames of 480x360; decoded once as uint8 it is ~190 MB at
full resolution (~48 MB at half), so every epoch is pure augmentation + compute, with no PNG
decoding on a CPU that is shared with other work.

Layout expected under ``root`` (the SegNet form of CamVid): ``train/``, ``trainannot/``,
``val/``, ``valannot/``; labels are 8-bit class indices 0..10 with 11 = void (ignored).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from demasked_ros.core.classes import CAMVID
from demasked_ros.core.masks import MaskSet, detection_masks, recovery_masks

#: Label value that the loss and the metrics ignore (CamVid void).
IGNORE_INDEX = CAMVID.ignore_index
#: Environment variable that overrides the CamVid location.
CAMVID_ENV = "DEMASKED_CAMVID"


class TrainingDataError(RuntimeError):
    """The training data is missing or malformed (the one error type of ``demasked_ros.training``)."""


def default_camvid_root() -> Path:
    """``$DEMASKED_CAMVID`` if set, else ``../shared/data/camvid`` next to the repository root."""
    env = os.environ.get(CAMVID_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"


@dataclass
class SegmentationSplit:
    """Decoded frames of one split: ``images`` N x H x W x 3 uint8 RGB, ``labels`` N x H x W uint8."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_split(
    root: Path | str, split: str, downscale: int = 1, max_frames: int | None = None
) -> SegmentationSplit:
    """Decode ``split`` ("train" or "val") into memory, optionally area-downscaled by ``downscale``.

    Images are downscaled with ``cv2.INTER_AREA`` (for factor 2 this is exactly the 2 x 2 average
    that ``FullResolutionSegNet`` applies in the network); labels with nearest neighbour.
    ``max_frames`` keeps the first frames in name order (a fast mode for tests).
    """
    root = Path(root)
    image_dir, label_dir = root / split, root / f"{split}annot"
    if not image_dir.is_dir() or not label_dir.is_dir():
        raise TrainingDataError(
            f"CamVid split {split!r} not found under {root} (need {split}/ and {split}annot/)"
        )
    names = sorted(p.name for p in image_dir.glob("*.png"))
    if max_frames is not None:
        names = names[:max_frames]
    if not names:
        raise TrainingDataError(f"no PNG frames in {image_dir}")
    return load_frames(root, [(split, name) for name in names], downscale)


def load_frames(root: Path | str, refs: Sequence[tuple[str, str]], downscale: int = 1) -> SegmentationSplit:
    """Decode the frames ``refs`` = ``[(split, file name), ...]`` (e.g. one fold's side) into memory.

    Same decoding as :func:`load_split`; ``names`` of the result are ``"split/file"``.
    """
    root = Path(root)
    if not refs:
        raise TrainingDataError("no frames to load")
    images, labels = [], []
    for split, name in refs:
        bgr = cv2.imread(str(root / split / name), cv2.IMREAD_COLOR)
        label = cv2.imread(str(root / f"{split}annot" / name), cv2.IMREAD_UNCHANGED)
        if bgr is None or label is None:
            raise TrainingDataError(f"cannot read {split}/{name} (image or label) under {root}")
        if label.ndim != 2 or label.shape != bgr.shape[:2]:
            raise TrainingDataError(f"label of {name} has shape {label.shape}, image {bgr.shape}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if downscale > 1:
            h, w = label.shape
            size = (w // downscale, h // downscale)
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            label = label[downscale // 2 :: downscale, downscale // 2 :: downscale][: size[1], : size[0]]
        images.append(rgb)
        labels.append(label)
    return SegmentationSplit(np.stack(images), np.stack(labels).astype(np.uint8),
                             [f"{split}/{name}" for split, name in refs])


def class_weights(labels: np.ndarray, num_classes: int, smoothing: float = 1.10) -> np.ndarray:
    """ENet-style class weights ``1 / ln(smoothing + share)`` (void excluded), float32.

    A gentle re-balancing: rare classes (pole, sign, pedestrian, bicyclist) count ~3-4x more than
    road, which lifts mIoU without wrecking pixel accuracy.
    """
    counts = np.bincount(labels.ravel(), minlength=num_classes + 1)[:num_classes].astype(np.float64)
    share = counts / max(counts.sum(), 1.0)
    return (1.0 / np.log(smoothing + share)).astype(np.float32)


#: How masked training copies are filled: OpenCV TELEA, the packaged learned demasker, or both.
FILL_CHOICES = ("telea", "learned", "mixed")


class MaskedFillCache:
    """Demasked copies (TELEA and/or learned) of training frames under the project's mask families.

    Why: the certifier feeds the segmenter demasked images; training on some of them makes the
    K branches agree more often (more pixels certified) without touching soundness. Each
    (frame, family, mask index) is inpainted once, lazily, and kept in memory.
    """

    def __init__(self, height: int, width: int, families: Sequence[MaskSet] | None = None,
                 fill: str = "telea") -> None:
        if fill not in FILL_CHOICES:
            raise ValueError(f"fill must be one of {FILL_CHOICES}, got {fill!r}")
        self.fill = fill
        self._learned: Any = None
        if families is None:
            families = (
                recovery_masks(height, width, 0.005, "column"),
                detection_masks(height, width, 0.01, "column"),
            )
        self.families = list(families)
        self._cache: dict[tuple[int, int, int, int], np.ndarray] = {}

    def filled(self, index: int, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A demasked copy of ``image`` (frame ``index``) under a random mask of a random family."""
        family = int(rng.integers(len(self.families)))
        masks = self.families[family]
        mask_index = int(rng.integers(masks.k))
        learned = self.fill == "learned" or (self.fill == "mixed" and rng.random() < 0.5)
        key = (index, family, mask_index, int(learned))
        if key not in self._cache:
            visible = masks.visible[mask_index]
            zeroed = np.where(visible[..., None], image, 0).astype(np.uint8)
            if learned:
                self._cache[key] = self._learned_demasker().demask(zeroed[None], visible[None])[0]
            else:
                hidden = (~visible).astype(np.uint8)
                self._cache[key] = cv2.inpaint(zeroed, hidden, 3, cv2.INPAINT_TELEA)
        return self._cache[key]

    def _learned_demasker(self) -> Any:
        if self._learned is None:
            from demasked_ros.engines.learned_demasker import default_learned_demasker

            self._learned = default_learned_demasker(threads=1)
        return self._learned


@dataclass
class AugmentConfig:
    """Random scale, crop, flip and photometric jitter applied per training sample."""

    crop: tuple[int, int] = (176, 240)
    scale_range: tuple[float, float] = (0.75, 1.75)
    flip: bool = True
    jitter: float = 0.2
    demask_probability: float = 0.0
    demask_fill: str = "telea"
    #: Stronger photometric / sensor augmentation (all off by default, as the shipped recipe):
    #: saturation jitter (+-), gamma in [1 - gamma, 1 + gamma], Gaussian blur probability (sigma
    #: 0.5-1.5 px) and additive Gaussian sensor noise with a random sigma up to ``noise_std`` (0-255).
    saturation: float = 0.0
    gamma: float = 0.0
    #: Label written into padding (the dataset's void label; CamVid's by default).
    ignore_index: int = IGNORE_INDEX
    blur_probability: float = 0.0
    noise_std: float = 0.0


def augment(
    image: np.ndarray, label: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random training view: scaled, cropped (void-padded), flipped, colour-jittered."""
    scale = float(rng.uniform(*config.scale_range))
    h, w = label.shape
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    crop_h, crop_w = config.crop
    pad_h, pad_w = max(0, crop_h - new_h), max(0, crop_w - new_w)
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                   value=config.ignore_index)
    top = int(rng.integers(image.shape[0] - crop_h + 1))
    left = int(rng.integers(image.shape[1] - crop_w + 1))
    image = image[top : top + crop_h, left : left + crop_w]
    label = label[top : top + crop_h, left : left + crop_w]
    if config.flip and rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    if config.jitter > 0:
        gain = 1.0 + rng.uniform(-config.jitter, config.jitter)
        bias = 255.0 * rng.uniform(-config.jitter, config.jitter) / 2
        image = np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    image = photometric(image, config, rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def photometric(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Saturation, gamma, blur and sensor noise of ``config`` (each skipped when its knob is 0).

    Why: the held-out drives differ from the training drives mostly in light, colour and camera
    noise; these make the segmenter lean on shape rather than on the exact colours of three drives.
    """
    if config.saturation > 0:
        grey = image.astype(np.float32).mean(axis=2, keepdims=True)
        factor = 1.0 + rng.uniform(-config.saturation, config.saturation)
        image = np.clip(grey + (image - grey) * factor, 0, 255).astype(np.uint8)
    if config.gamma > 0:
        gamma = 1.0 + rng.uniform(-config.gamma, config.gamma)
        table = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
        image = table[image]
    if config.blur_probability > 0 and rng.random() < config.blur_probability:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 1.5)))
    if config.noise_std > 0:
        sigma = float(rng.uniform(0, config.noise_std))
        noise = rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return image


#: Classes whose frames :func:`frame_sampling_weights` favours (pole, sign, car, pedestrian, bicyclist).
SAFETY_CLASSES: tuple[int, ...] = (2, 6, 8, 9, 10)


def frame_sampling_weights(labels: np.ndarray, classes: Sequence[int] = SAFETY_CLASSES,
                           strength: float = 1.0, saturation_share: float = 0.01) -> np.ndarray:
    """Per-frame sampling probabilities that favour frames showing the small safety classes.

    ``w_i = 1 + strength * mean_c min(1, share_ic / saturation_share)``: a frame with 1 % of its
    pixels pedestrian counts as fully "pedestrian"; normalised to sum 1. ``strength=0`` is uniform.
    """
    flat = labels.reshape(labels.shape[0], -1)
    if not classes:
        return np.full(len(flat), 1.0 / len(flat))
    shares = np.stack([(flat == c).mean(axis=1) for c in classes], axis=1)
    weights = 1.0 + strength * np.minimum(1.0, shares / saturation_share).mean(axis=1)
    return (weights / weights.sum()).astype(np.float64)


class TrainBatches:
    """Yields shuffled augmented batches (uint8 images B x H x W x 3, labels B x H x W) per epoch."""

    def __init__(self, split: SegmentationSplit, batch_size: int, config: AugmentConfig) -> None:
        self.split = split
        self.batch_size = batch_size
        self.config = config
        height, width = split.labels.shape[1:]
        self.fill_cache = (MaskedFillCache(height, width, fill=config.demask_fill)
                           if config.demask_probability > 0 else None)

    def __len__(self) -> int:
        return max(1, len(self.split) // self.batch_size)

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of one epoch (drop-last), drawn from ``rng`` only (deterministic given it)."""
        order = rng.permutation(len(self.split))
        for b in range(len(self)):
            indices = order[b * self.batch_size : (b + 1) * self.batch_size]
            images, labels = [], []
            for index in indices:
                image = self.split.images[index]
                if self.fill_cache is not None and rng.random() < self.config.demask_probability:
                    image = self.fill_cache.filled(int(index), image, rng)
                view, label = augment(image, self.split.labels[index], self.config, rng)
                images.append(view)
                labels.append(label)
            yield np.stack(images), np.stack(labels)
