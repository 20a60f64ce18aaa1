"""Workers and Ray give exactly the single-process results; Ray is optional with a clear message."""

from __future__ import annotations

import builtins
import io
import json

import pytest

from demasked_ros.apps.evaluate.config import EvaluationError
from demasked_ros.apps.evaluate.parallel import (
    ProcessExecutor,
    RayExecutor,
    SerialExecutor,
    make_executor,
    ordered_map,
)
from demasked_ros.apps.evaluate.report import build_summary
from demasked_ros.apps.evaluate.runner import FrameOutcome, RunState, evaluate_frames
from demasked_ros.core.classes import CAMVID
from demasked_ros.datasets.procedural import ProceduralSource
from tests.apps.evaluate.eval_fixtures import HEIGHT, WIDTH, spec

FRAMES = 5
TIMING_KEYS = ("latency_s", "timings")


def evaluate_with(executor) -> tuple[list[dict], dict]:
    """Run the small configurations over a procedural drive with ``executor``."""
    evaluator_spec = spec()
    configs = list(evaluator_spec.configs)
    source = ProceduralSource(FRAMES, seed=3, height=HEIGHT, width=WIDTH)
    state = RunState.restore([], configs, CAMVID.num_classes, CAMVID.ignore_index, CAMVID.names)
    todo = {i: [c.config_id for c in configs] for i in range(FRAMES)}
    jsonl = io.StringIO()
    try:
        evaluate_frames(source.iter_records(), todo, executor, state, jsonl)
    finally:
        executor.close()
    records = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    for record in records:
        for key in TIMING_KEYS:
            record.pop(key)
    summary = build_summary(configs, state, {})["configurations"]
    metrics = {cid: {k: v for k, v in entry.items()
                     if k not in ("seconds", "seconds_per_frame", "latency_s", "stage_seconds_per_frame")}
               for cid, entry in summary.items()}
    return records, metrics


@pytest.fixture(scope="module")
def serial_results():
    return evaluate_with(SerialExecutor(spec()))


def test_worker_processes_match_the_single_process_run(serial_results):
    records, metrics = evaluate_with(ProcessExecutor(spec(), workers=2))
    assert records == serial_results[0]
    assert metrics == serial_results[1]
    assert len(records) == FRAMES * len(spec().configs)


@pytest.mark.slow  # starting a local Ray instance takes ~10 s on 2 cores
def test_ray_matches_the_single_process_run(serial_results, monkeypatch):
    pytest.importorskip("ray", reason="ray is not installed (pip install ray); Ray equality not tested")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    records, metrics = evaluate_with(RayExecutor(spec(), "local", workers=2))
    assert records == serial_results[0]
    assert metrics == serial_results[1]


def test_missing_ray_gives_a_clear_message(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(EvaluationError, match="pip install"):
        make_executor(spec(), ray_address="auto")


def test_ordered_map_keeps_input_order_with_a_bounded_window():
    in_flight, peak = [], []

    def submit(job):
        in_flight.append(job)
        peak.append(len(in_flight))
        return job

    def collect(job):
        in_flight.remove(job)
        return FrameOutcome(job[0], f"f{job[0]}", 0, {})

    jobs = iter([(index, [], False) for index in range(7)])
    outcomes = list(ordered_map(jobs, submit, collect, window=3))
    assert [o.index for o in outcomes] == list(range(7))
    assert max(peak) == 3


def test_workers_must_be_positive():
    with pytest.raises(EvaluationError):
        ProcessExecutor(spec(), workers=0)


def test_local_ray_instances_bind_to_loopback(monkeypatch, tmp_path):
    from demasked_ros.apps.evaluate.parallel import ray_init_arguments

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_init_arguments("local", 2)["_node_ip_address"] == "127.0.0.1"
    auto = ray_init_arguments("auto", 2)
    assert auto.get("_node_ip_address", "127.0.0.1") == "127.0.0.1"  # joins a cluster, or starts on loopback
    assert "_node_ip_address" not in ray_init_arguments("ray://head:10001", 2)  # a real cluster's own address
