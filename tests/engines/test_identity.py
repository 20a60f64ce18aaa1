"""Model identity: name + content hash, no directory."""

import hashlib

import pytest

from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.identity import content_hash, model_identity


def test_identity_is_name_and_content_hash_without_the_directory(tmp_path):
    first = tmp_path / "deep" / "secret" / "model.onnx"
    first.parent.mkdir(parents=True)
    first.write_bytes(b"weights-1")
    identity = model_identity(first)
    assert identity == f"model.onnx sha256:{hashlib.sha256(b'weights-1').hexdigest()[:16]}"
    assert str(tmp_path) not in identity and "/" not in identity
    other = tmp_path / "model.onnx"
    other.write_bytes(b"weights-2")
    assert model_identity(other) != identity  # same name, other weights: told apart
    assert content_hash(first, 64) == hashlib.sha256(b"weights-1").hexdigest()
    with pytest.raises(EngineError):
        model_identity(tmp_path / "missing.onnx")
