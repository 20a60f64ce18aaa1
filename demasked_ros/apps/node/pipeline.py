"""Frame pipelining: frame t+1 is prepared (decoded, resized, staged on the device) while frame t
is certified.

Why: on a GPU a frame's K branches take milliseconds, and decoding the camera message, resizing
it and copying it to the device take a good part of that again; one after the other on one
thread, they add up. :class:`FramePipeline` runs them on two threads: a *prepare* thread and a
*certify* thread (``process``), so the certify thread finds the next frame ready.

Keep-latest, as in :class:`~.worker.LatestFrameWorker`: at most one received frame waits to be
prepared, and at most one prepared frame waits to be certified. A newer frame replaces a waiting
one, which is counted as dropped (``on_drop``). The frame certified next is therefore always the
newest prepared one, and no backlog builds up.

Order and fail closed: the prepare thread takes frames in arrival order and the certify thread in
the order they were prepared, so results leave in arrival order (the camera's stamp order). A
failed preparation is not reported from the prepare thread, where its alert could overtake the
previous frame's result: the exception travels with the frame, and ``on_error(item, error)`` is
called on the certify thread, in order, exactly where ``process`` would have run. The watchdog's
view, :meth:`FramePipeline.in_progress`, lists the frames in work oldest first, with the seconds
each was worked on (preparing plus certifying; waiting behind the previous frame does not count,
as waiting in :class:`~.worker.LatestFrameWorker` does not).

This module has no ROS dependency; the node supplies ``prepare`` / ``process`` (see
:class:`PreparedFrame`) and picks the worker with :func:`make_frame_worker`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from demasked_ros.apps.node.worker import LatestFrameWorker

Item = TypeVar("Item")
Prepared = TypeVar("Prepared")


@dataclass(frozen=True)
class PreparedFrame:
    """What the node's prepare stage hands its certify stage for one frame.

    Either a frame ready to certify (``image``: the decoded camera-size frame; ``certifier``: the
    FrameCertifier for its size; ``staged``: that certifier's ``prepare`` result), or a failure the
    certify stage publishes fail-closed, in order: ``rejected`` (invalid input) or ``error`` (the
    staging failed), with the text for the alert and ``log`` for the node's log.
    ``seconds``: time spent preparing.
    """

    image: np.ndarray | None = None
    certifier: Any = None
    staged: Any = None
    rejected: str = ""
    error: str = ""
    log: str = ""
    seconds: float = 0.0


class FrameWorker(Protocol[Item]):
    """What the node needs from its frame worker, pipelined or not."""

    def start(self) -> None:
        """Start (or resume) accepting and processing items."""

    def pause(self, timeout: float = 10.0) -> bool:
        """Stop accepting, drop waiting items, wait for those in work; True when idle."""

    def stop(self, timeout: float = 10.0) -> bool:
        """Pause and end the threads; True when they ended."""

    def submit(self, item: Item) -> bool:
        """Offer the newest item (replacing a waiting one); False when not accepting."""

    @property
    def busy(self) -> bool:
        """True while any item is in work."""

    def in_progress(self, now: float) -> list[tuple[Item, float]]:
        """Items in work, oldest first, with the seconds each has been worked on."""


def make_frame_worker(pipelined: bool, prepare: Callable[[Item], Prepared],
                      process: Callable[[Item, Prepared], None],
                      on_error: Callable[[Item, BaseException], None],
                      on_drop: Callable[[Item], None] | None = None) -> FrameWorker[Item]:
    """A :class:`FramePipeline`, or (``pipelined=False``) one thread doing prepare then process."""
    if pipelined:
        return FramePipeline(prepare, process, on_error, on_drop)
    return LatestFrameWorker(lambda item: process(item, prepare(item)), on_error, on_drop)


@dataclass
class _Job(Generic[Item, Prepared]):
    """One item in work: its preparation's outcome and when each stage started."""

    item: Item
    since: float
    prepared: Prepared | None = None
    error: BaseException | None = None
    prepare_seconds: float = 0.0


class FramePipeline(Generic[Item, Prepared]):
    """Two-stage keep-latest worker: ``prepare(item)`` for the newest item beside ``process``.

    Args:
        prepare: prepare thread; its result goes to ``process``. An exception it raises goes to
            ``on_error`` on the certify thread, in order.
        process: certify thread, ``process(item, prepared)``; exceptions go to ``on_error``.
        on_error: failure handler (the node publishes a fail-closed alert there).
        on_drop: called (under the pipeline's lock) with each item replaced or discarded before
            ``process``; every submitted item is either processed or dropped.
    """

    def __init__(self, prepare: Callable[[Item], Prepared], process: Callable[[Item, Prepared], None],
                 on_error: Callable[[Item, BaseException], None],
                 on_drop: Callable[[Item], None] | None = None, name: str = "demasked") -> None:
        self._prepare, self._process, self._on_error, self._on_drop = prepare, process, on_error, on_drop
        self._name = name
        self._condition = threading.Condition()
        self._incoming: list[Item] = []  # at most one received item
        self._ready: _Job[Item, Prepared] | None = None  # at most one prepared item
        self._preparing: _Job[Item, Prepared] | None = None
        self._processing: _Job[Item, Prepared] | None = None
        self._epoch = 0  # bumped by pause: a preparation finishing later is dropped
        self._accepting = False
        self._stopping = False
        self._threads: dict[str, threading.Thread] = {}
        self.submitted = 0
        self.dropped = 0
        self.processed = 0

    def start(self) -> None:
        """Start (or resume) accepting and processing items."""
        with self._condition:
            self._accepting, self._stopping = True, False
            for stage, target in (("prepare", self._run_prepare), ("certify", self._run_process)):
                thread = self._threads.get(stage)
                if thread is None or not thread.is_alive():
                    thread = threading.Thread(target=target, name=f"{self._name}-{stage}", daemon=True)
                    self._threads[stage] = thread
                    thread.start()

    def pause(self, timeout: float = 10.0) -> bool:
        """Stop accepting, drop waiting items, let the items in work finish; True when idle."""
        with self._condition:
            self._accepting = False
            self._epoch += 1
            self._discard_waiting()
            return self._condition.wait_for(lambda: self._preparing is None and self._processing is None,
                                            timeout=timeout)

    def stop(self, timeout: float = 10.0) -> bool:
        """Pause and end both threads; True when they ended within ``timeout`` seconds each."""
        idle = self.pause(timeout)
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        ended = True
        for thread in list(self._threads.values()):
            if thread is not threading.current_thread():
                thread.join(timeout)
                ended = ended and not thread.is_alive()
        if ended:
            self._threads = {}
        return idle and ended

    @property
    def accepting(self) -> bool:
        """True between :meth:`start` and :meth:`pause` / :meth:`stop`."""
        return self._accepting

    @property
    def busy(self) -> bool:
        """True while an item is being prepared, waits prepared, or is being processed."""
        return self._preparing is not None or self._ready is not None or self._processing is not None

    def submit(self, item: Item) -> bool:
        """Offer ``item``; it replaces a waiting received one (counted dropped). False if paused."""
        with self._condition:
            if not self._accepting:
                return False
            self.submitted += 1
            while self._incoming:
                self._drop(self._incoming.pop())
            self._incoming.append(item)
            self._condition.notify_all()
            return True

    def in_progress(self, now: float) -> list[tuple[Item, float]]:
        """Items in work, oldest first: (item, seconds prepared + seconds processed so far)."""
        with self._condition:
            jobs = []
            if self._processing is not None:
                job = self._processing
                jobs.append((job.item, job.prepare_seconds + now - job.since))
            if self._ready is not None:
                jobs.append((self._ready.item, self._ready.prepare_seconds))
            if self._preparing is not None:
                jobs.append((self._preparing.item, now - self._preparing.since))
            return jobs

    # -- threads --------------------------------------------------------------------------------

    def _run_prepare(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: bool(self._incoming) or self._stopping)
                if self._stopping:
                    return
                job: _Job[Item, Prepared] = _Job(self._incoming.pop(), time.monotonic())
                self._preparing, epoch = job, self._epoch
            try:
                job.prepared = self._prepare(job.item)
            except Exception as error:  # reported in order by the certify thread
                job.error = error
            job.prepare_seconds = time.monotonic() - job.since
            with self._condition:
                self._preparing = None
                if epoch != self._epoch or not self._accepting:
                    self._drop(job.item)  # paused meanwhile: never processed
                else:
                    if self._ready is not None:
                        self._drop(self._ready.item)
                    self._ready = job
                self._condition.notify_all()

    def _run_process(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._ready is not None or self._stopping)
                if self._stopping:
                    return
                job = self._ready
                assert job is not None
                self._ready = None
                job.since = time.monotonic()
                self._processing = job
            try:
                if job.error is not None:
                    raise job.error
                self._process(job.item, job.prepared)  # type: ignore[arg-type]
            except Exception as error:  # the pipeline must survive anything a frame throws
                with contextlib.suppress(Exception):  # a failing handler must not kill the thread
                    self._on_error(job.item, error)
            finally:
                with self._condition:
                    self._processing = None
                    self.processed += 1
                    self._condition.notify_all()

    def _discard_waiting(self) -> None:
        while self._incoming:
            self._drop(self._incoming.pop())
        if self._ready is not None:
            self._drop(self._ready.item)
            self._ready = None

    def _drop(self, item: Item) -> None:
        self.dropped += 1
        if self._on_drop is not None:
            with contextlib.suppress(Exception):
                self._on_drop(item)
