"""Keep-latest processing: one worker thread always works on the newest frame, never a backlog.

Why: a certifier is slower than a camera. Queuing frames would make every output older than the
last, so the worker holds at most one pending frame; a newer frame replaces it and the replaced
one is counted as dropped. The ROS executor thread only hands frames over and never waits.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class LatestFrameWorker(Generic[Item]):
    """Runs ``process(item)`` on a background thread for the newest submitted item only.

    Args:
        process: called on the worker thread for each item taken; its exceptions go to
            ``on_error(item, exception)`` and the worker carries on.
        on_error: failure handler (the node publishes a fail-closed alert there).
        on_drop: called (on the submitting thread) with each item replaced before processing.
    """

    def __init__(self, process: Callable[[Item], None],
                 on_error: Callable[[Item, BaseException], None],
                 on_drop: Callable[[Item], None] | None = None, name: str = "demasked-worker") -> None:
        self._process = process
        self._on_error = on_error
        self._on_drop = on_drop
        self._name = name
        self._condition = threading.Condition()
        self._pending: Item | None = None
        self._has_pending = False
        self._accepting = False
        self._stopping = False
        self._busy = False
        self._current: Item | None = None
        self._current_since = 0.0
        self._thread: threading.Thread | None = None
        self.submitted = 0
        self.dropped = 0
        self.processed = 0

    def start(self) -> None:
        """Start (or resume) accepting and processing items."""
        with self._condition:
            self._accepting = True
            self._stopping = False
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def pause(self, timeout: float = 10.0) -> bool:
        """Stop accepting, drop the pending item and wait for the current one; True when idle."""
        with self._condition:
            self._accepting = False
            self._discard_pending()
            return self._condition.wait_for(lambda: not self._busy, timeout=timeout)

    def stop(self, timeout: float = 10.0) -> bool:
        """Pause and end the thread; True when it ended within ``timeout`` seconds."""
        idle = self.pause(timeout)
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                return False
        self._thread = None
        return idle

    @property
    def accepting(self) -> bool:
        """True between :meth:`start` and :meth:`pause` / :meth:`stop`."""
        return self._accepting

    @property
    def busy(self) -> bool:
        """True while an item is being processed."""
        return self._busy

    def in_progress(self, now: float) -> list[tuple[Item, float]]:
        """The item being processed and its seconds so far (the node's watchdog); [] when idle."""
        with self._condition:
            if not self._busy:
                return []
            return [(self._current, now - self._current_since)]  # type: ignore[list-item]

    def submit(self, item: Item) -> bool:
        """Offer ``item``; it replaces any pending one (counted in :attr:`dropped`). False if paused."""
        with self._condition:
            if not self._accepting:
                return False
            self.submitted += 1
            self._discard_pending()
            self._pending, self._has_pending = item, True
            self._condition.notify_all()
            return True

    def _discard_pending(self) -> None:
        if self._has_pending:
            dropped = self._pending
            self._pending, self._has_pending = None, False
            self.dropped += 1
            if self._on_drop is not None and dropped is not None:
                self._on_drop(dropped)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._has_pending or self._stopping)
                if self._stopping:
                    return
                item = self._pending
                self._pending, self._has_pending = None, False
                self._busy, self._current, self._current_since = True, item, time.monotonic()
            try:
                self._process(item)  # type: ignore[arg-type]
            except Exception as error:  # the worker must survive anything a frame throws
                with contextlib.suppress(Exception):  # a failing handler must not kill the thread
                    self._on_error(item, error)  # type: ignore[arg-type]
            finally:
                with self._condition:
                    self._busy, self._current = False, None
                    self.processed += 1
                    self._condition.notify_all()
