"""``demasked-train segmenter|demasker ...``: one entry point for reproducing the default models.

Dispatches to :func:`demasked_ros.training.segmenter_train.main` or
:func:`demasked_ros.training.demasker_train.main` with the remaining arguments, importing torch
only for the chosen subcommand so ``--help`` stays fast and a missing ``train`` extra gives a
clear message instead of a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: Subcommand -> module whose ``main(argv) -> int`` it runs.
SUBCOMMANDS: dict[str, str] = {
    "segmenter": "demasked_ros.training.segmenter_train",
    "demasker": "demasked_ros.training.demasker_train",
    "consistency": "demasked_ros.training.consistency_train",
    "evaluate-folds": "demasked_ros.training.fold_eval",
    "finetune": "demasked_ros.training.finetune",
    "alternate": "demasked_ros.training.alternate",
    "unfold": "demasked_ros.training.unfold",
}

USAGE = (
    "usage: demasked-train {segmenter,demasker,consistency,evaluate-folds,finetune,alternate,unfold}"
    " [options]\n"
    "  segmenter       train the default CamVid segmenter and export it to ONNX\n"
    "  demasker        train the default learned demasker and export it to ONNX\n"
    "  consistency     certification-aware segmenter training on a leave-one-sequence-out fold\n"
    "  evaluate-folds  fold table: each held-out sequence's clean / certified figures and the mean\n"
    "  finetune        certification-aware fine-tuning of your own torch segmenter\n"
    "  alternate       rounds of segmenter and task-driven demasker fine-tuning\n"
    "  unfold          the packaged segmenter as a trainable checkpoint (consistency --init)\n"
    "Run `demasked-train SUBCOMMAND --help` for the options of each."
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a training subcommand; exit code 2 on a usage error or a missing training extra."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in SUBCOMMANDS:
        print(f"demasked-train: unknown subcommand {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(SUBCOMMANDS[command])
    except ModuleNotFoundError as error:
        print(f"demasked-train {command}: cannot import {error.name!r}; install the training extra "
              "(pip install 'demasked_ros[train]' or requirements/train.txt)", file=sys.stderr)
        return 2
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
