"""Resumable HTTP(S) download with checksums, and safe extraction of selected archive members.

Used by ``demasked-fetch-data`` (:mod:`demasked_ros.datasets.camvid_fetch`); nothing else in the
package downloads anything, and nothing downloads at run time.

- :func:`download` writes to ``<dest>.part`` and resumes it with an HTTP ``Range`` request, on a later
  attempt in the same call or in a later run. A server that ignores ``Range`` (answers 200) is handled
  by starting over. The body must have the announced length, else the ``.part`` is kept for resuming
  and :class:`IncompleteDownloadError` is raised; with ``sha256`` a wrong file is deleted and
  :class:`ChecksumMismatchError` raised. Only a complete, verified file is renamed to ``dest``.
- :func:`extract_members` copies the members a selector accepts out of a tar (any compression) or zip
  archive, regular files only, to paths the selector builds from validated names (no traversal).

Errors are :class:`FetchError` subclasses (all :class:`~demasked_ros.datasets.base.DatasetError`s), one
per thing a user can act on: :class:`NetworkError` (offline, unreachable, HTTP error),
:class:`IncompleteDownloadError`, :class:`ChecksumMismatchError`, :class:`ArchiveError`.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import re
import socket
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from demasked_ros.datasets.base import DatasetError

USER_AGENT = "demasked-fetch-data/0.1 (+https://github.com/)"
_CHUNK = 1 << 20


class FetchError(DatasetError):
    """A download or unpacking step failed; subclasses say which (see the module docstring)."""


class NetworkError(FetchError):
    """The server could not be reached (offline, refused, unresolvable, timed out) or answered an error."""


class IncompleteDownloadError(FetchError):
    """The connection ended before the whole file arrived; the ``.part`` file is kept, rerun to resume."""


class ChecksumMismatchError(FetchError):
    """A file's sha256 is not the expected one (the bad download is deleted)."""


class ArchiveError(FetchError):
    """The archive cannot be read, or does not hold what was asked for."""


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download` did: the file, its size and sha256, bytes resumed from an earlier try."""

    path: Path
    size: int
    sha256: str
    resumed_bytes: int
    attempts: int


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_network_error(url: str, error: BaseException) -> str:
    """A message that says, in words, why ``url`` could not be fetched and what to do."""
    host = urllib.parse.urlsplit(url).hostname or url
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, socket.gaierror):
        what = f"cannot resolve host {host!r} ({reason.strerror or reason})"
    elif isinstance(reason, ConnectionRefusedError):
        what = f"connection to {host!r} refused"
    elif isinstance(reason, TimeoutError):
        what = f"no answer from {host!r} (timed out)"
    elif isinstance(reason, OSError):
        what = f"cannot reach {host!r} ({reason.strerror or reason})"
    else:
        what = f"cannot reach {host!r} ({reason})"
    return (f"{what}; are you offline? Download {url} on a machine with internet access and pass "
            "the file with --archive FILE")


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range`` header (``bytes a-b/n`` or ``bytes */n``)."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if match is None:
        return None, None
    first = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return first, total


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=timeout)
    return response


def download(url: str, dest: Path, *, sha256: str | None = None, timeout: float = 60.0, attempts: int = 3,
             progress: Callable[[int, int | None], None] | None = None) -> DownloadResult:
    """Download ``url`` to ``dest`` (resumable, see the module docstring) and return what was done.

    Args:
        url: http(s) URL (redirects are followed).
        dest: final path; ``<dest>.part`` holds the partial download meanwhile.
        sha256: expected hex digest of the whole file; checked before ``dest`` is written.
        timeout: seconds to wait for the connection and for each read.
        attempts: connections tried in this call when a transfer breaks off (each resumes).
        progress: ``progress(bytes so far, total or None)`` after every chunk.

    Raises:
        NetworkError, IncompleteDownloadError, ChecksumMismatchError; OSError for local disk problems.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed = part.stat().st_size if part.is_file() else 0
    total: int | None = None
    problem = ""
    attempt = 0
    for attempt in range(1, attempts + 1):  # noqa: B007 - reported in the result
        offset = part.stat().st_size if part.is_file() else 0
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError as error:
            first, size = _content_range(error.headers.get("Content-Range") if error.headers else None)
            if error.code == 416 and offset and size == offset:  # the .part is already complete
                total = size
                break
            if error.code == 416 and offset:  # the .part does not fit the file on the server: start over
                part.unlink()
                problem = f"the server refused to resume at byte {offset}; starting over"
                continue
            raise NetworkError(f"{url}: HTTP {error.code} {error.reason}") from error
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            raise NetworkError(describe_network_error(url, error)) from error
        with response:
            first, size = _content_range(response.headers.get("Content-Range"))
            length = response.headers.get("Content-Length")
            if offset and (response.status != 206 or first != offset):
                offset = 0  # the server ignored Range (200) or answered another range: start over
            if size is None and length and length.isdigit():
                size = offset + int(length)
            total = size
            try:
                with part.open("ab" if offset else "wb") as handle:
                    done = offset
                    while block := response.read(_CHUNK):
                        handle.write(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            except (http.client.HTTPException, ConnectionError, TimeoutError) as error:
                problem = f"the transfer broke off ({type(error).__name__}: {error})"
                continue
        received = part.stat().st_size
        if total is not None and received < total:
            problem = f"the connection closed after {received} of {total} bytes"
            continue
        if total is not None and received > total:
            part.unlink()
            raise IncompleteDownloadError(f"{url}: received {received} bytes but the file has {total}; "
                                          "the partial download was deleted, run again")
        break
    else:
        received = part.stat().st_size if part.is_file() else 0
        raise IncompleteDownloadError(f"{url}: download incomplete after {attempts} attempt(s): {problem}; "
                                      f"{received} bytes kept in {part}, run the same command again "
                                      "to resume")
    digest = file_sha256(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink()
        raise ChecksumMismatchError(f"{url}: sha256 {digest} is not the expected {sha256.lower()}; "
                                    "the download was deleted")
    part.replace(dest)
    return DownloadResult(dest, dest.stat().st_size, digest, resumed, attempt)


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def safe_parts(name: str) -> tuple[str, ...] | None:
    """The components of a relative archive member name; ``None`` if unsafe (absolute, ``..``, odd chars)."""
    name = name.replace("\\", "/")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if name.startswith("/") or not parts or any(not _SAFE_NAME.match(part) for part in parts):
        return None
    return parts


Opener = Callable[[], IO[bytes]]


def _zip_items(bundle: zipfile.ZipFile) -> Iterator[tuple[str, Opener]]:
    for info in bundle.infolist():
        if not info.is_dir():
            yield info.filename, functools.partial(bundle.open, info)


def _tar_items(bundle: tarfile.TarFile) -> Iterator[tuple[str, Opener]]:
    for member in bundle:
        if member.isfile():
            yield member.name, functools.partial(_tar_file, bundle, member)


def _tar_file(bundle: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    handle = bundle.extractfile(member)
    if handle is None:  # pragma: no cover - isfile() members always have data
        raise ArchiveError(f"cannot read {member.name}")
    return handle


@contextmanager
def _members(archive: Path) -> Iterator[Iterator[tuple[str, Opener]]]:
    """(name, opener) of every regular file in a tar or zip archive, in archive order."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            yield _zip_items(zipped)
        return
    try:
        tarred = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed below
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise ArchiveError(f"{archive}: not a readable tar or zip archive ({error})") from error
    with tarred:
        yield _tar_items(tarred)


def extract_members(archive: Path, select: Callable[[tuple[str, ...]], Path | None]) -> list[Path]:
    """Copy the archive's regular files that ``select`` maps to a path; return the paths written.

    ``select(parts)`` gets the member's validated path components and returns the destination (or
    ``None`` to skip). Members with unsafe names are skipped; links and devices are never followed.

    Raises:
        ArchiveError: unreadable, truncated or corrupt archive.
    """
    written: list[Path] = []
    try:
        with _members(archive) as members:
            for name, opener in members:
                parts = safe_parts(name)
                target = select(parts) if parts is not None else None
                if target is None:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                temporary = target.with_name(target.name + ".tmp")
                with opener() as source, temporary.open("wb") as sink:
                    while block := source.read(_CHUNK):
                        sink.write(block)
                temporary.replace(target)
                written.append(target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise ArchiveError(f"{archive}: the archive is truncated or corrupt ({error}); "
                           "delete it and download again") from error
    return written
