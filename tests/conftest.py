"""Shared fixtures for tests that run ROS 2 (rclpy) in this or in child processes.

Network rule: every ROS process a test starts uses ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a
ROS_DOMAIN_ID of its own and a writable ROS_HOME. Domain ids come from 100..199 and are reserved
with a file lock for the test's whole duration, so concurrent pytest runs on the same machine (other
developers, other CI jobs) never share a domain.

Fixtures:
    ros_domain_id   a domain id reserved for this test.
    ros_env         the environment (dict) for child ROS processes of this test.
    ros_python      factory: ros_python("-c", code) / ros_python(script, args...) starts
                    sys.executable with ros_env; every process is stopped at teardown.
    ros_interfaces  makes demasked_ros_interfaces importable here (skips if not built, fails
                    instead when DEMASKED_REQUIRE_ROS=1).
    rclpy_context   an initialised rclpy Context in this process on ros_domain_id.
    warning_log     a logger stand-in whose ``warning(text)`` lines land in ``.lines``.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from demasked_ros.rosio.ros_env import (
    REQUIRE_ROS_ENV,
    RosEnvironmentError,
    ensure_interfaces_importable,
    ros_subprocess_env,
    start_ros_python,
)

DOMAIN_RANGE = range(100, 200)
_LOCK_DIR = Path(tempfile.gettempdir()) / f"demasked_ros-{os.getuid()}" / "domain-locks"

# Any rclpy.init in this test process (even one a test forgets to configure) stays on this host.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)


def _reserve_domain() -> tuple[int, IO[str]]:
    """Lock a free domain id; the returned open file holds the lock until closed."""
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    start = os.getpid() % len(DOMAIN_RANGE)  # spread concurrent runs over the range
    for offset in range(len(DOMAIN_RANGE)):
        domain_id = DOMAIN_RANGE[(start + offset) % len(DOMAIN_RANGE)]
        handle = open(_LOCK_DIR / f"{domain_id}.lock", "w")  # noqa: SIM115 - closed at teardown
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return domain_id, handle
    raise RuntimeError(f"all ROS domain ids {DOMAIN_RANGE.start}..{DOMAIN_RANGE.stop - 1} are in use")


def _ros_unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ROS_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ROS_ENV}=1)")
    pytest.skip(reason)


@pytest.fixture
def ros_domain_id() -> Iterator[int]:
    """A ROS_DOMAIN_ID in 100..199 that no other test on this machine uses meanwhile."""
    domain_id, lock = _reserve_domain()
    try:
        yield domain_id
    finally:
        lock.close()


@pytest.fixture
def ros_env(ros_domain_id: int, tmp_path: Path) -> dict[str, str]:
    """Environment for this test's child ROS processes: localhost-only, own domain and ROS_HOME."""
    return ros_subprocess_env(ros_domain_id, ros_home=tmp_path / "ros_home")


@pytest.fixture
def ros_interfaces() -> Path:
    """Make demasked_ros_interfaces importable in this process; returns its install prefix."""
    try:
        import rclpy  # noqa: F401
    except ImportError as error:
        _ros_unavailable(f"rclpy not importable ({error}); pip install -r requirements/ros.txt")
    try:
        return ensure_interfaces_importable()
    except RosEnvironmentError as error:
        _ros_unavailable(str(error))
        raise  # unreachable: skip/fail raise


@pytest.fixture
def ros_python(ros_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Factory that starts ``sys.executable *args`` in ros_env; stops all of them at teardown.

    Keyword arguments go to subprocess.Popen (default: stdout/stderr piped, text mode). Processes
    get SIGINT first (rclpy shuts down cleanly), then SIGKILL after 5 s.
    """
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, **popen_kwargs: Any) -> subprocess.Popen[str]:
        popen_kwargs.setdefault("stdout", subprocess.PIPE)
        popen_kwargs.setdefault("stderr", subprocess.PIPE)
        env = dict(ros_env)
        env.update(popen_kwargs.pop("extra_env", {}))
        env.setdefault("PYTHONUNBUFFERED", "1")
        process = start_ros_python(list(args), env, **popen_kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in started:
        try:
            process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture
def rclpy_context(
    ros_interfaces: Path, ros_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """An initialised rclpy Context in this process, on this test's domain; shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    for name in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_HOME", "ROS_LOG_DIR",
                 "RMW_IMPLEMENTATION", "FASTDDS_DEFAULT_PROFILES_FILE"):
        if name in ros_env:
            monkeypatch.setenv(name, ros_env[name])
    context = Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


class WarningLog:
    """Records ``warning`` lines: the logger the executor fallback and model loading write to."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture
def warning_log() -> WarningLog:
    return WarningLog()
