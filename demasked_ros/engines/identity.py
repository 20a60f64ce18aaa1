"""A model's public identity: its file name and a hash of its content, never a machine's path.

Why: ``~/class_info`` and diagnostics used to carry the model's absolute path, which leaks the
machine's layout and does not say *which* model ran (two files of the same name differ). The
name plus a content hash identifies the weights exactly and is the same on every machine.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from demasked_ros.engines.errors import EngineError

#: Hex digits of the SHA-256 kept in the identity (64 bits: collisions are not a concern here).
HASH_DIGITS = 16


def content_hash(path: str | Path, digits: int = HASH_DIGITS) -> str:
    """First ``digits`` hex digits of the SHA-256 of a file (read in 1 MiB blocks).

    Raises:
        EngineError: the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise EngineError(f"cannot hash model file {Path(path).name}: {error.strerror}") from error
    return digest.hexdigest()[:digits]


def model_identity(path: str | Path) -> str:
    """``"<file name> sha256:<hash>"`` for a model file (e.g. ``segmenter.onnx sha256:1a2b...``)."""
    return f"{Path(path).name} sha256:{content_hash(path)}"
