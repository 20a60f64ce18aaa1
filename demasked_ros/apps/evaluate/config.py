"""Evaluation configurations: which certifiers one ``demasked-eval`` pass compares.

A configuration is one point of the grid ``modes x schemes x patch sizes x demaskers x segmenters``
(plus the paper's ablations). It comes from command-line flags or a YAML / JSON ``--config`` file and
is turned into a :class:`~demasked_ros.core.masks.MaskSet` per image size.

Config file format (YAML or JSON)::

    defaults:                     # optional, applied to every entry
      demasker: telea
      segmenter: default
    configurations:               # list-valued fields expand into a grid within the entry
      - {mode: detection, scheme: [column, row], patch: 0.01}
      - {mode: recovery, scheme: [column, row, 3-mask, 4-mask], patch: 0.005}
      - {mode: recovery, scheme: column, patch: 0.005, demasker: solid}   # no-demasking ablation
      - {mode: recovery, scheme: drs-s, patch: 0.005}                      # DRS-S (appendix G)

Named presets (:data:`PRESETS`: ``table1``, ``ablation`` (no demasking, DRS-S), ``demaskers``
(TELEA / Navier-Stokes next to the default), ``sweep`` (Figure 5) and ``paper`` (all of them), e.g.
``--config table1``) reproduce the paper's experiments.

DRS-S (appendix G): the visible region of branch ``k`` is the column band ``[k*s, k*s + b)``
(wrapping around the right edge, as in De-Randomized Smoothing; :mod:`demasked_ros.core.masks_drs`),
the rest is filled with solid black and segmented without demasking (``drs-e`` keeps the
configured demasker: the paper's DRS-E). A patch can touch at most ``T`` of the ``K = ceil(W/s)``
bands (``T`` computed exactly for the image width); the certifier then certifies a pixel where the
vote wins by more than ``2T`` (DRS's margin rule). ``b`` and ``s`` default to the paper's ADE20K
choice (42, 22 at 512 px) scaled to the image width.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from demasked_ros.core.errors import CoreError
from demasked_ros.core.masks import MaskSet
from demasked_ros.core.spec import DRS_SCHEMES, MODES, CertSpec, patch_label, schemes_for
from demasked_ros.core.threat import PatchSpec
from demasked_ros.engines.factory import DEMASKER_NAMES


class EvaluationError(ValueError):
    """Bad evaluator input: configuration, input path, output folder, resume state, worker setup.

    The single error type of :mod:`demasked_ros.apps.evaluate` (readers raise their own
    ``DatasetError`` / ``BagError``, which the CLI reports the same way).
    """


DEMASKERS = DEMASKER_NAMES
__all__ = ["DRS_SCHEMES", "MODES", "EvalConfig", "EvaluationError", "GridSpec", "patch_label"]


@dataclass(frozen=True)
class EvalConfig:
    """One certifier to evaluate.

    Attributes:
        mode: ``"recovery"`` or ``"detection"``.
        scheme: recovery scheme (column, row, 3-mask, 4-mask), detection axis (column, row, block),
            or a DRS baseline (``drs-s``: solid black, no demasking; ``drs-e``: with demasking).
        patch: fraction of the image area (square patch) or explicit ``(ph, pw)`` pixels.
        demasker: ``telea``, ``ns``, ``solid`` (no demasking), ``learned`` (the packaged model) or
            ``default`` (learned when installed, else TELEA).
        segmenter: ``default`` (the packaged model), a path to an ONNX file, or a name registered
            with the runner's :class:`~demasked_ros.apps.evaluate.runner.EngineFactory`.
        n_patches: number of patches certified against (recovery only).
        k: number of masks (None = the scheme's default).
        mask_width: detection band width in pixels (None = 2 x patch side).
        drs_width, drs_stride: DRS column width b and stride s in pixels (None = the paper's
            ADE20K values scaled to the image width).
    """

    mode: str
    scheme: str
    patch: PatchSpec
    demasker: str = "default"
    segmenter: str = "default"
    n_patches: int = 1
    k: int | None = None
    mask_width: int | None = None
    drs_width: int | None = None
    drs_stride: int | None = None

    def __post_init__(self) -> None:
        if self.scheme == "drs-s" and self.demasker != "solid":
            object.__setattr__(self, "demasker", "solid")  # DRS-S is defined without demasking
        if self.demasker not in DEMASKERS:
            raise EvaluationError(f"unknown demasker {self.demasker!r}; choose one of {list(DEMASKERS)}")
        if not isinstance(self.segmenter, str) or not self.segmenter:
            raise EvaluationError(f"segmenter must be 'default', a .onnx path or a registered name, "
                                  f"got {self.segmenter!r}")
        object.__setattr__(self, "patch", self.spec.patch)

    @property
    def spec(self) -> CertSpec:
        """The certification spec of this configuration (validated; EvaluationError if invalid)."""
        try:
            return CertSpec(mode=self.mode, scheme=self.scheme, patch=self.patch, n_patches=self.n_patches,
                            k=self.k, band_width=self.mask_width, drs_width=self.drs_width,
                            drs_stride=self.drs_stride)
        except CoreError as error:
            raise EvaluationError(str(error)) from error

    @property
    def config_id(self) -> str:
        """Stable, file-name-safe identifier, e.g. ``recovery-column-0.5pct-telea-default``."""
        if isinstance(self.patch, tuple):
            patch = f"{self.patch[0]}x{self.patch[1]}px"
        else:
            patch = f"{100 * self.patch:g}pct"
        parts = [self.mode, self.scheme, patch, self.demasker, Path(self.segmenter).stem]
        extras = {"n": self.n_patches if self.n_patches != 1 else None, "k": self.k,
                  "band": self.mask_width, "b": self.drs_width, "s": self.drs_stride}
        parts += [f"{key}{value}" for key, value in extras.items() if value is not None]
        return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))

    @property
    def method(self) -> str:
        """Row label for reports: ``Demasked Smoothing``, ``DRS-S`` or ``DRS-E``."""
        return self.scheme.upper() if self.scheme in DRS_SCHEMES else "Demasked Smoothing"

    def parameters(self) -> dict[str, Any]:
        """JSON-ready parameters (for summary.json and resume checks)."""
        params = asdict(self)
        params["patch"] = list(self.patch) if isinstance(self.patch, tuple) else self.patch
        return params

    def masks(self, height: int, width: int) -> MaskSet:
        """The mask set of this configuration for an ``height x width`` image.

        Raises:
            EvaluationError: when the patch or scheme does not fit the image.
        """
        spec = self.spec
        try:
            return spec.masks(height, width)
        except CoreError as error:
            raise EvaluationError(f"configuration {self.config_id}: {error}") from error

GRID_FIELDS = ("mode", "scheme", "patch", "demasker", "segmenter")


@dataclass(frozen=True)
class GridSpec:
    """Lists of values whose cartesian product gives configurations (schemes not valid for a mode
    are skipped, so ``--mode recovery detection --scheme column row 3-mask`` works)."""

    modes: Sequence[str] = ("recovery",)
    schemes: Sequence[str] = ("column",)
    patches: Sequence[PatchSpec] = (0.005,)
    demaskers: Sequence[str] = ("default",)
    segmenters: Sequence[str] = ("default",)
    extras: Mapping[str, Any] = field(default_factory=dict)

    def expand(self) -> list[EvalConfig]:
        """Every valid configuration, in a stable order, without duplicates."""
        configs: list[EvalConfig] = []
        product = itertools.product(self.modes, self.schemes, self.patches, self.demaskers,
                                    self.segmenters)
        for mode, scheme, patch, demasker, segmenter in product:
            if mode in MODES and scheme not in schemes_for(mode, drs=True) and len(self.schemes) > 1:
                continue
            configs.append(EvalConfig(mode=mode, scheme=scheme, patch=patch, demasker=demasker,
                                      segmenter=segmenter, **self.extras))
        return unique(configs)


def unique(configs: Iterable[EvalConfig]) -> list[EvalConfig]:
    """Drop repeated configurations (same id), keeping the first; error on an empty list."""
    seen: dict[str, EvalConfig] = {}
    for config in configs:
        seen.setdefault(config.config_id, config)
    if not seen:
        raise EvaluationError("no valid configuration: check --mode / --scheme combinations")
    return list(seen.values())


def configs_from_mapping(document: Mapping[str, Any],
                         engine_defaults: Mapping[str, str] | None = None) -> list[EvalConfig]:
    """Configurations from a parsed config document (see the module docstring for the format).

    Precedence: an entry's own keys, then the document's ``defaults``, then ``engine_defaults``.
    """
    if not isinstance(document, Mapping) or "configurations" not in document:
        raise EvaluationError("a config file needs a 'configurations' list")
    defaults = document.get("defaults", {}) or {}
    entries = document["configurations"]
    if not isinstance(defaults, Mapping) or not isinstance(entries, list) or not entries:
        raise EvaluationError("'defaults' must be a mapping and 'configurations' a non-empty list")
    known = {f for f in EvalConfig.__dataclass_fields__}
    configs: list[EvalConfig] = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise EvaluationError(f"configuration #{number} must be a mapping, got {entry!r}")
        merged = {**(engine_defaults or {}), **defaults, **entry}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise EvaluationError(f"configuration #{number}: unknown keys {unknown}; known: {sorted(known)}")
        if "mode" not in merged or "scheme" not in merged or "patch" not in merged:
            raise EvaluationError(f"configuration #{number} needs mode, scheme and patch")
        grid = {key: _as_list(key, merged.pop(key)) for key in GRID_FIELDS if key in merged}
        try:
            configs += GridSpec(
                modes=grid["mode"], schemes=grid["scheme"], patches=grid["patch"],
                demaskers=grid.get("demasker", ["default"]), segmenters=grid.get("segmenter", ["default"]),
                extras=merged).expand()
        except (TypeError, EvaluationError) as error:
            raise EvaluationError(f"configuration #{number}: {error}") from error
    return unique(configs)


def _as_list(key: str, value: Any) -> list[Any]:
    # A pixel patch [ph, pw] is one value, not a list of two fractions.
    if key == "patch" and isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [tuple(v) for v in value]
    if key == "patch" and isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 1 for v in value):
        return [tuple(value)]
    return list(value) if isinstance(value, list) else [value]


def load_config_file(path: str | Path, engine_defaults: Mapping[str, str] | None = None) -> list[EvalConfig]:
    """Read a YAML or JSON config file, or a preset name from :data:`PRESETS`.

    ``engine_defaults`` (``{"demasker": ..., "segmenter": ...}`` from the command line) apply to
    entries that do not name their own demasker / segmenter.

    Raises:
        EvaluationError: missing file, parse error, or invalid entries (with the entry number).
    """
    name = str(path)
    if name in PRESETS:
        return configs_from_mapping(PRESETS[name], engine_defaults)
    file = Path(path)
    if not file.is_file():
        raise EvaluationError(f"config file {file} not found (presets: {sorted(PRESETS)})")
    text = file.read_text()
    try:
        if file.suffix.lower() == ".json":
            document = json.loads(text)
        else:
            import yaml  # PyYAML: only needed for YAML config files

            document = yaml.safe_load(text)
    except ImportError as error:
        raise EvaluationError("YAML config files need PyYAML (pip install pyyaml); or use JSON") from error
    except Exception as error:  # json.JSONDecodeError, yaml.YAMLError
        raise EvaluationError(f"cannot parse {file}: {error}") from error
    return configs_from_mapping(document, engine_defaults)


def _sweep(mode: str, fractions: Sequence[float]) -> dict[str, Any]:
    return {"mode": mode, "scheme": "column", "patch": list(fractions)}


#: Named configuration sets reproducing the paper's experiments (demasker/segmenter from flags).
PRESETS: dict[str, dict[str, Any]] = {
    "table1": {"configurations": [
        {"mode": "detection", "scheme": ["column", "row"], "patch": 0.01},
        {"mode": "recovery", "scheme": ["column", "row", "3-mask", "4-mask"], "patch": 0.005},
    ]},
    "ablation": {"configurations": [  # Table 7 (no demasking) and Table 10 (DRS-S)
        {"mode": "detection", "scheme": "column", "patch": 0.01, "demasker": "solid"},
        {"mode": "recovery", "scheme": "column", "patch": 0.005, "demasker": "solid"},
        {"mode": "recovery", "scheme": "drs-s", "patch": 0.005},
    ]},
    "demaskers": {"configurations": [  # Tables 8 / 9: other demaskers next to the default one
        {"mode": "detection", "scheme": "column", "patch": 0.01, "demasker": ["telea", "ns"]},
        {"mode": "recovery", "scheme": "column", "patch": 0.005, "demasker": ["telea", "ns"]},
    ]},
    "sweep": {"configurations": [  # Figure 5
        _sweep("recovery", [0.001, 0.0025, 0.005, 0.01, 0.015, 0.02]),
        _sweep("detection", [0.005, 0.01, 0.02, 0.03, 0.04, 0.05]),
    ]},
}
PRESETS["paper"] = {"configurations": [entry for name in ("table1", "ablation", "demaskers", "sweep")
                                       for entry in PRESETS[name]["configurations"]]}


#: The paper's numbers for comparison rows in reports: (mode, scheme, patch fraction, demasking?) ->
#: [(where, mIoU, big mR, big cmR, all mR, all cmR, %C, FAR)], read from ``paper_results.json``: Table 1
#: (ADE20K / BEiT-B and COCO-Stuff-10K / PSPNet, ZITS demasking), Table 7 (ADE20K / Swin, 200 images,
#: with and without demasking; mIoU and mR of the detection rows do not depend on demasking) and
#: Table 10 (DRS-S).
PaperRow = tuple[str, float, float, float, float, float, float, float | None]
PAPER_RESULTS: dict[tuple[str, str, float, bool], list[PaperRow]] = {
    (entry["mode"], entry["scheme"], entry["patch"], entry["demasking"]):
        [cast(PaperRow, tuple(row)) for row in entry["rows"]]
    for entry in json.loads(Path(__file__).with_name("paper_results.json").read_text())
}


def paper_rows(config: EvalConfig) -> list[PaperRow]:
    """The paper's results for the same mode, scheme, patch and demasking choice (may be empty)."""
    if isinstance(config.patch, tuple):
        return []
    key = (config.mode, config.scheme, round(config.patch, 6), config.demasker != "solid")
    return PAPER_RESULTS.get(key, [])
