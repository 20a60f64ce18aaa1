"""FramePipeline without ROS: overlap, order, keep-latest drops, fail-closed errors, pause/stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from demasked_ros.apps.node.pipeline import FramePipeline, make_frame_worker
from demasked_ros.apps.node.worker import LatestFrameWorker

WAIT = 10.0  # generous: the test machine is shared and loaded


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


class Recorder:
    """prepare/process/on_error/on_drop callbacks that log events and can be held at gates."""

    def __init__(self, fail_prepare: tuple[object, ...] = (), fail_process: tuple[object, ...] = ()) -> None:
        self.events: list[tuple[str, object]] = []
        self.threads: dict[tuple[str, object], str] = {}
        self.dropped: list[object] = []
        self.errors: list[tuple[object, str]] = []
        self.fail_prepare, self.fail_process = fail_prepare, fail_process
        self.prepare_gates: dict[object, threading.Event] = {}
        self.process_gates: dict[object, threading.Event] = {}
        self.lock = threading.Lock()

    def _log(self, event: str, item: object) -> None:
        with self.lock:
            self.events.append((event, item))
            self.threads[(event, item)] = threading.current_thread().name

    def hold(self, stage: str, *items: object) -> None:
        gates = self.prepare_gates if stage == "prepare" else self.process_gates
        for item in items:
            gates[item] = threading.Event()

    def release(self, stage: str, item: object) -> None:
        (self.prepare_gates if stage == "prepare" else self.process_gates)[item].set()

    def prepare(self, item: object) -> str:
        self._log("prepare", item)
        if item in self.prepare_gates:
            assert self.prepare_gates[item].wait(WAIT)
        if item in self.fail_prepare:
            raise ValueError(f"cannot decode {item}")
        self._log("prepared", item)
        return f"ready-{item}"

    def process(self, item: object, prepared: str) -> None:
        self._log("process", item)
        assert prepared == f"ready-{item}", "process must get its own item's preparation"
        if item in self.process_gates:
            assert self.process_gates[item].wait(WAIT)
        if item in self.fail_process:
            raise RuntimeError(f"model crashed on {item}")
        self._log("done", item)

    def on_error(self, item: object, error: BaseException) -> None:
        self._log("error", item)
        self.errors.append((item, str(error)))

    def on_drop(self, item: object) -> None:
        self.dropped.append(item)

    def has(self, event: str, item: object) -> bool:
        with self.lock:
            return (event, item) in self.events

    def order(self, event: str) -> list[object]:
        with self.lock:
            return [item for name, item in self.events if name == event]

    def pipeline(self) -> FramePipeline[object, str]:
        return FramePipeline(self.prepare, self.process, self.on_error, self.on_drop)


@pytest.fixture
def started():
    """``start(rec)``: the recorder's pipeline, started, and stopped again after the test."""
    pipelines: list[FramePipeline[object, str]] = []

    def start(rec: Recorder) -> FramePipeline[object, str]:
        pipeline = rec.pipeline()
        pipelines.append(pipeline)
        pipeline.start()
        return pipeline

    yield start
    for pipeline in pipelines:
        pipeline.stop(timeout=5)


def test_the_next_frame_is_prepared_while_the_current_one_is_processed(started):
    rec = Recorder()
    rec.hold("process", 1)
    pipeline = started(rec)
    assert pipeline.submit(1)
    assert wait_until(lambda: rec.has("process", 1))
    assert pipeline.submit(2)
    # Frame 2 is prepared while frame 1 is still being processed (held at its gate).
    assert wait_until(lambda: rec.has("prepared", 2)), rec.events
    assert not rec.has("done", 1)
    rec.release("process", 1)
    assert wait_until(lambda: rec.has("done", 2))
    assert rec.order("done") == [1, 2] and rec.dropped == [] and rec.errors == []
    assert rec.threads[("prepare", 2)] != rec.threads[("process", 2)]
    assert (pipeline.submitted, pipeline.dropped, pipeline.processed) == (2, 0, 2)


def test_keep_latest_one_prepared_frame_waits_and_a_newer_one_replaces_it(started):
    rec = Recorder()
    rec.hold("process", 0)
    rec.hold("prepare", 5)
    pipeline = started(rec)
    pipeline.submit(0)
    assert wait_until(lambda: rec.has("process", 0))
    pipeline.submit(1)
    assert wait_until(lambda: rec.has("prepared", 1))
    pipeline.submit(2)  # prepared too: replaces 1, which is dropped unprocessed
    assert wait_until(lambda: rec.has("prepared", 2))
    assert rec.dropped == [1]
    pipeline.submit(5)  # held in preparation; 6 and 7 wait as received frames: 6 is replaced
    assert wait_until(lambda: rec.has("prepare", 5))
    pipeline.submit(6)
    pipeline.submit(7)
    assert rec.dropped == [1, 6]
    assert [item for item, _ in pipeline.in_progress(time.monotonic())] == [0, 2, 5]
    rec.release("prepare", 5)  # 5 replaces 2; then 7 is prepared and replaces 5
    assert wait_until(lambda: rec.has("prepared", 7))
    rec.release("process", 0)
    assert wait_until(lambda: not pipeline.busy)
    assert rec.order("done") == [0, 7], "only the newest prepared frame is processed"
    assert rec.dropped == [1, 6, 2, 5]
    assert pipeline.dropped == 4 and pipeline.processed == 2
    assert pipeline.submitted == pipeline.dropped + pipeline.processed == 6


def test_a_failed_preparation_fails_closed_in_order_on_the_processing_thread(started):
    rec = Recorder(fail_prepare=("bad",))
    rec.hold("process", 1)
    pipeline = started(rec)
    pipeline.submit(1)
    assert wait_until(lambda: rec.has("process", 1))
    pipeline.submit("bad")
    assert wait_until(lambda: rec.has("prepare", "bad"))
    time.sleep(0.05)
    assert rec.errors == [], "the failure must not overtake frame 1's result"
    rec.release("process", 1)
    assert wait_until(lambda: rec.has("error", "bad"))
    assert [event for event in rec.events if event[0] in ("done", "error")] == [("done", 1), ("error", "bad")]
    assert rec.errors == [("bad", "cannot decode bad")]
    assert rec.threads[("error", "bad")] == rec.threads[("process", 1)]
    assert not rec.has("process", "bad"), "a frame that failed to prepare is never processed"
    pipeline.submit(3)  # and the pipeline carries on
    assert wait_until(lambda: rec.has("done", 3))
    assert pipeline.processed == 3 and pipeline.dropped == 0


def test_processing_errors_go_to_on_error_and_the_pipeline_lives_on(started):
    rec = Recorder(fail_process=(1,))
    pipeline = started(rec)
    pipeline.submit(1)
    assert wait_until(lambda: rec.has("error", 1))
    pipeline.submit(2)
    assert wait_until(lambda: rec.has("done", 2))
    assert rec.errors == [(1, "model crashed on 1")]


def test_pause_drops_waiting_frames_and_lets_those_in_work_finish_then_stop_ends_threads(started):
    rec = Recorder()
    rec.hold("process", 0)
    rec.hold("prepare", 2)
    pipeline = started(rec)
    pipeline.submit(0)
    assert wait_until(lambda: rec.has("process", 0))
    pipeline.submit(1)
    assert wait_until(lambda: rec.has("prepared", 1))
    pipeline.submit(2)
    assert wait_until(lambda: rec.has("prepare", 2))
    pipeline.submit(3)
    paused: list[bool] = []
    pauser = threading.Thread(target=lambda: paused.append(pipeline.pause(timeout=WAIT)))
    pauser.start()
    assert wait_until(lambda: sorted(rec.dropped) == [1, 3])  # waiting frames go at once
    assert not pipeline.accepting and not pipeline.submit(4)
    assert not paused, "pause waits for the frames in work"
    rec.release("prepare", 2)
    rec.release("process", 0)
    pauser.join(WAIT)
    assert paused == [True]
    assert rec.order("done") == [0] and not rec.has("process", 2), "prepared after pause: dropped"
    assert sorted(rec.dropped) == [1, 2, 3] and not pipeline.busy
    assert pipeline.submitted == pipeline.dropped + pipeline.processed == 4
    pipeline.start()  # resume
    pipeline.submit(5)
    assert wait_until(lambda: rec.has("done", 5))
    assert pipeline.stop(timeout=WAIT)
    assert not any(thread.is_alive() for thread in threading.enumerate()
                   if thread.name.startswith("demasked-") and thread.name.endswith(("prepare", "certify")))
    assert not pipeline.submit(6)


def test_in_progress_counts_preparing_and_processing_but_not_waiting(started):
    rec = Recorder()
    rec.hold("process", 0)
    rec.hold("prepare", 1)
    pipeline = started(rec)
    pipeline.submit(0)
    assert wait_until(lambda: rec.has("process", 0))
    pipeline.submit(1)
    assert wait_until(lambda: rec.has("prepare", 1))
    time.sleep(0.2)
    rec.release("prepare", 1)  # frame 1 took >= 0.2 s to prepare, then waits behind frame 0
    assert wait_until(lambda: rec.has("prepared", 1))
    first = dict(pipeline.in_progress(time.monotonic()))
    time.sleep(0.3)
    second = dict(pipeline.in_progress(time.monotonic()))
    assert list(second) == [0, 1]  # oldest first
    assert first[1] >= 0.2 and second[1] == first[1], "waiting does not count towards the timeout"
    assert second[0] >= first[0] + 0.29, "processing does"
    rec.release("process", 0)
    assert wait_until(lambda: not pipeline.busy)
    assert pipeline.in_progress(time.monotonic()) == []


def test_without_pipelining_one_thread_prepares_then_processes():
    rec = Recorder(fail_prepare=("bad",))
    worker = make_frame_worker(False, rec.prepare, rec.process, rec.on_error, rec.on_drop)
    assert isinstance(worker, LatestFrameWorker)
    assert isinstance(make_frame_worker(True, rec.prepare, rec.process, rec.on_error), FramePipeline)
    worker.start()
    try:
        worker.submit(1)
        assert wait_until(lambda: rec.has("done", 1))
        worker.submit("bad")
        assert wait_until(lambda: rec.has("error", "bad"))
        assert rec.threads[("prepare", 1)] == rec.threads[("process", 1)]
        assert rec.errors == [("bad", "cannot decode bad")]
    finally:
        assert worker.stop(timeout=5)
