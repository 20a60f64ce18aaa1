"""Resumable download and safe extraction, over a loopback HTTP server (no internet)."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile

import pytest

from demasked_ros.datasets.fetch import (
    ArchiveError,
    ChecksumMismatchError,
    IncompleteDownloadError,
    NetworkError,
    download,
    extract_members,
    safe_parts,
)
from tests.fetch_server import ArchiveServer, camvid_like_archive

PAYLOAD = camvid_like_archive()
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_writes_the_file_and_checks_its_sha256(tmp_path):
    dest = tmp_path / "a" / "master.tar.gz"
    with ArchiveServer(PAYLOAD) as server:
        result = download(server.url, dest, sha256=DIGEST, timeout=5)
    assert dest.read_bytes() == PAYLOAD and result.sha256 == DIGEST and result.size == len(PAYLOAD)
    assert server.ranges == [None] and result.resumed_bytes == 0
    assert not dest.with_name("master.tar.gz.part").exists()


def test_a_broken_transfer_resumes_with_a_range_request_in_the_same_call(tmp_path):
    dest = tmp_path / "master.tar.gz"
    with ArchiveServer(PAYLOAD) as server:
        server.truncate_first = 1
        result = download(server.url, dest, sha256=DIGEST, timeout=5, attempts=3)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [None, f"bytes={len(PAYLOAD) // 2}-"] and result.attempts == 2


def test_a_truncated_download_is_kept_and_resumed_by_the_next_run(tmp_path):
    dest = tmp_path / "master.tar.gz"
    part = tmp_path / "master.tar.gz.part"
    with ArchiveServer(PAYLOAD) as server:
        server.truncate_first = 1
        with pytest.raises(IncompleteDownloadError, match="run the same command again to resume"):
            download(server.url, dest, sha256=DIGEST, timeout=5, attempts=1)
        assert not dest.exists() and part.read_bytes() == PAYLOAD[: len(PAYLOAD) // 2]
        result = download(server.url, dest, sha256=DIGEST, timeout=5, attempts=1)
    assert server.ranges[-1] == f"bytes={len(PAYLOAD) // 2}-"
    assert result.resumed_bytes == len(PAYLOAD) // 2 and dest.read_bytes() == PAYLOAD


def test_a_server_that_ignores_range_makes_the_download_start_over(tmp_path):
    dest = tmp_path / "master.tar.gz"
    (tmp_path / "master.tar.gz.part").write_bytes(PAYLOAD[:100])
    with ArchiveServer(PAYLOAD) as server:
        server.ignore_range = True
        download(server.url, dest, sha256=DIGEST, timeout=5)
    assert server.ranges == ["bytes=100-"] and dest.read_bytes() == PAYLOAD  # not 100 bytes twice


def test_a_complete_part_file_is_recognised_from_the_416_answer(tmp_path):
    dest = tmp_path / "master.tar.gz"
    (tmp_path / "master.tar.gz.part").write_bytes(PAYLOAD)
    with ArchiveServer(PAYLOAD) as server:
        download(server.url, dest, sha256=DIGEST, timeout=5)
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"] and dest.read_bytes() == PAYLOAD


def test_a_checksum_mismatch_deletes_the_download(tmp_path):
    dest = tmp_path / "master.tar.gz"
    with ArchiveServer(PAYLOAD) as server, pytest.raises(ChecksumMismatchError, match="sha256"):
        download(server.url, dest, sha256="0" * 64, timeout=5)
    assert not dest.exists() and not (tmp_path / "master.tar.gz.part").exists()


def test_a_corrupt_part_file_is_caught_by_the_checksum(tmp_path):
    dest = tmp_path / "master.tar.gz"
    (tmp_path / "master.tar.gz.part").write_bytes(b"x" * 100)  # not the file's first 100 bytes
    with ArchiveServer(PAYLOAD) as server, pytest.raises(ChecksumMismatchError):
        download(server.url, dest, sha256=DIGEST, timeout=5)
    assert not dest.exists()


def test_offline_connection_refused_is_a_clear_network_error(tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(NetworkError, match=r"refused.*offline.*--archive"):
        download(f"http://127.0.0.1:{port}/master.tar.gz", tmp_path / "a.tgz", timeout=5)


def test_offline_unresolvable_host_is_a_clear_network_error(tmp_path, monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # what a machine without DNS answers
    with pytest.raises(NetworkError, match=r"cannot resolve host 'github\.example'.*offline"):
        download("https://github.example/x.tar.gz", tmp_path / "a.tgz", timeout=5)


def test_http_errors_name_the_status(tmp_path):
    with ArchiveServer(PAYLOAD) as server, pytest.raises(NetworkError, match="HTTP 404"):
        download(server.url.replace("master", "other"), tmp_path / "a.tgz", timeout=5)


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            bundle.addfile(info)
    return buffer.getvalue()


def test_extraction_skips_unsafe_names_and_links(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar({"top/ok/a.png": b"a", "../evil.png": b"e", "top/../../evil2.png": b"e",
                              "/abs/evil3.png": b"e"}, links={"top/ok/link.png": "/etc/passwd"}))
    out = tmp_path / "out"
    written = extract_members(archive, lambda parts: out.joinpath(*parts))
    assert written == [out / "top" / "ok" / "a.png"]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.png", "a.tar.gz"]
    assert safe_parts("a/../b") is None and safe_parts("a/./b.png") == ("a", "b.png")


def test_a_truncated_archive_is_an_archive_error(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(PAYLOAD[: len(PAYLOAD) * 2 // 3])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        extract_members(archive, lambda parts: tmp_path / "out" / parts[-1])
    archive.write_bytes(b"not an archive at all")
    with pytest.raises(ArchiveError):
        extract_members(archive, lambda parts: tmp_path / "out" / parts[-1])
