"""Route libjpeg/libpng warnings (written by the C libraries to stderr) to a Python callback.

Why: OpenCV's JPEG and PNG decoders leave libjpeg's and libpng's warning handlers at their
defaults, which ``fprintf(stderr, ...)``: a fuzzed or corrupt stream floods the node's console
with "Corrupt JPEG data: ..." lines that bypass the ROS logger and its throttling. While a decode
runs, :func:`capture_stderr` points file descriptor 2 at a temporary file and hands the lines to
the caller, who logs them (throttled) through ROS.

Caveat: file descriptor 2 belongs to the whole process, so anything another thread writes to
stderr during the (milliseconds-long) decode is captured too; it is passed on with the decoder's
lines rather than lost. Captures are serialised with a lock.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

#: Most bytes of captured output kept per decode.
MAX_CAPTURE_BYTES = 16 * 1024
_LOCK = threading.Lock()


@contextlib.contextmanager
def capture_stderr() -> Iterator[list[str]]:
    """Collect what C code writes to stderr inside the block; the list is filled on exit."""
    lines: list[str] = []
    with _LOCK, tempfile.TemporaryFile() as sink:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(MAX_CAPTURE_BYTES).decode("utf-8", "replace")
            lines.extend(line.strip() for line in text.splitlines() if line.strip())
