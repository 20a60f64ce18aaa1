"""``demasked-fetch-data``: exit codes and messages, over a loopback HTTP server (no internet)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from demasked_ros.apps.fetch_cli import (
    EXIT_ARCHIVE,
    EXIT_INCOMPLETE,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VERIFY,
    main,
)
from demasked_ros.datasets.camvid_fetch import build_manifest, sequences_table
from tests.fetch_server import ArchiveServer, camvid_like_archive, unpack_reference

PAYLOAD = camvid_like_archive()


@pytest.fixture
def manifest(tmp_path):
    root = unpack_reference(PAYLOAD, tmp_path / "reference")
    (root / "sequences.tsv").write_text(sequences_table(root))
    path = tmp_path / "manifest.tsv"
    build_manifest(root, out=path)
    return str(path)


def test_fetch_writes_verifies_and_says_what_it_wrote(tmp_path, manifest, capsys, monkeypatch):
    monkeypatch.setenv("DEMASKED_CAMVID", str(tmp_path / "elsewhere"))
    target = tmp_path / "camvid"
    with ArchiveServer(PAYLOAD) as server:
        code = main(["camvid", str(target), "--url", server.url, "--manifest", manifest, "--timeout", "5"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert f"wrote {target}: train/ 2, trainannot/ 2, val/ 2, valannot/ 2, test/ 1, testannot/ 1" in out
    assert "9 files match the sha256 manifest" in out and "2 files are not in the manifest" in out
    assert f"export DEMASKED_CAMVID={target}" in out
    assert main(["camvid", str(target), "--manifest", manifest]) == EXIT_OK  # already there: verified
    assert "already holds CamVid" in capsys.readouterr().out
    (target / "val" / "0016E5_07959.png").write_bytes(b"broken")
    assert main(["camvid", str(target), "--verify-only", "--manifest", manifest]) == EXIT_VERIFY
    assert "DO NOT MATCH: val/0016E5_07959.png" in capsys.readouterr().out


def test_truncated_download_exits_4_then_the_rerun_resumes(tmp_path, manifest, capsys):
    target = tmp_path / "camvid"
    with ArchiveServer(PAYLOAD) as server:
        server.truncate_first = 1
        args = ["camvid", str(target), "--url", server.url, "--manifest", manifest, "--timeout", "5"]
        assert main([*args, "--attempts", "1"]) == EXIT_INCOMPLETE
        assert "run the same command again to resume" in capsys.readouterr().err
        assert main(args) == EXIT_OK
    assert server.ranges[-1] == f"bytes={len(PAYLOAD) // 2}-"


def test_checksum_mismatch_exits_1(tmp_path, manifest, capsys):
    with ArchiveServer(PAYLOAD) as server:
        code = main(["camvid", str(tmp_path / "c"), "--url", server.url, "--manifest", manifest,
                     "--sha256", "a" * 64, "--timeout", "5"])
    assert code == EXIT_VERIFY and "is not the expected" in capsys.readouterr().err
    with ArchiveServer(camvid_like_archive(seed=3)) as server:
        code = main(["camvid", str(tmp_path / "c"), "--url", server.url, "--manifest", manifest,
                     "--timeout", "5"])
    assert code == EXIT_VERIFY and "DO NOT MATCH" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_offline_exits_3_with_a_clear_message(tmp_path, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/m.tar.gz"
    code = main(["camvid", str(tmp_path / "c"), "--url", url, "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == EXIT_NETWORK and "refused" in err and "are you offline" in err and "--archive" in err


def test_bad_archive_exits_5_and_bad_arguments_exit_2(tmp_path, capsys):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(PAYLOAD[:200])
    assert main(["camvid", str(tmp_path / "c"), "--archive", str(archive), "--skip-manifest"]) == EXIT_ARCHIVE
    assert "truncated or corrupt" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    archive.write_bytes(PAYLOAD)
    assert main(["camvid", str(busy), "--archive", str(archive), "--skip-manifest"]) == EXIT_USAGE
    for bad in (["--sha256", "xyz"], ["--attempts", "0"], ["imagenet"]):
        with pytest.raises(SystemExit) as stop:
            main(["camvid", str(tmp_path / "d"), *bad] if bad[0] != "imagenet" else bad)
        assert stop.value.code == EXIT_USAGE


def test_skip_manifest_installs_and_reports_everything_unverified(tmp_path, capsys):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(PAYLOAD)
    assert main(["camvid", str(tmp_path / "c"), "--archive", str(archive), "--skip-manifest"]) == EXIT_OK
    assert "11 files are not in the manifest and are UNVERIFIED" in capsys.readouterr().out


def test_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "demasked_ros.apps.fetch_cli", "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "--archive" in result.stdout and "resume" in result.stdout
