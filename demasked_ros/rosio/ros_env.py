"""Network-safe ROS 2 environment for demasked_ros processes (node, tests, demo, benchmark).

ROS 2 over Fast DDS multicasts discovery traffic to the whole network unless told otherwise, and
the interfaces built in ``ros2_ws/`` are only importable when their install folder is on the search
paths. This module is the Python twin of ``scripts/ros_env.sh``:

- :func:`ros_subprocess_env` builds the environment of a child ROS process: its own
  ``ROS_DOMAIN_ID``, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, no static peers, a writable
  ``ROS_HOME``/``ROS_LOG_DIR``, Fast DDS with the shipped shared-memory profile, and the built
  interfaces on ``PYTHONPATH``/``LD_LIBRARY_PATH``/``AMENT_PREFIX_PATH``.
- :func:`check_ros_environment` inspects an environment: tests and demos call it with
  ``strict=True`` (anything that could leave the host is an error); the node calls it with
  ``strict=False`` and logs the returned warnings, since a real robot legitimately talks to the
  network.
- :func:`ensure_interfaces_importable` makes ``demasked_ros_interfaces`` importable in the
  *current* process when the environment was not sourced (adds the path and preloads the libraries).
- :func:`start_ros_python` starts ``sys.executable`` with such an environment.

Never imports rclpy, so it is safe to import anywhere.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

INTERFACES_PACKAGE = "demasked_ros_interfaces"
FASTDDS_PROFILE_NAME = "fastdds_shm.xml"
DEFAULT_RMW = "rmw_fastrtps_cpp"
#: Highest domain id Fast DDS can map to UDP ports (RTPS port formula with the default gains).
MAX_DOMAIN_ID = 232
#: Discovery ranges that keep all traffic on this host.
SAFE_DISCOVERY_RANGES = ("LOCALHOST", "OFF")
#: Set to "1" to make a missing ROS installation an error instead of a skip (CI).
REQUIRE_ROS_ENV = "DEMASKED_REQUIRE_ROS"

_PATH_VARS = ("PYTHONPATH", "LD_LIBRARY_PATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH")


class RosEnvironmentError(RuntimeError):
    """The ROS environment is unsafe (could reach the network) or incomplete (interfaces missing)."""


def repo_root() -> Path:
    """Root of the source checkout this module lives in (holds ``ros2_ws/``, ``config/``)."""
    return Path(__file__).resolve().parents[2]


def _python_site_dir(prefix: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return prefix / "lib" / version / "site-packages"


def interfaces_prefix(env: Mapping[str, str] | None = None) -> Path | None:
    """Install prefix of ``demasked_ros_interfaces``, or None when it has not been built.

    Looks in ``$DEMASKED_WS/install`` (default ``<repo>/ros2_ws/install``) and then in every entry
    of ``AMENT_PREFIX_PATH`` (a normal ROS install or an overlay workspace).
    """
    env = os.environ if env is None else env
    workspace = Path(env.get("DEMASKED_WS") or repo_root() / "ros2_ws")
    candidates = [workspace / "install" / INTERFACES_PACKAGE]
    candidates += [Path(p) for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in candidates:
        if (prefix / "share" / INTERFACES_PACKAGE / "package.xml").is_file():
            return prefix
    return None


def fastdds_profile_path() -> Path | None:
    """The shipped Fast DDS profile (checkout ``config/`` or an installed ``share/demasked_ros``)."""
    for candidate in (
        repo_root() / "config" / FASTDDS_PROFILE_NAME,
        Path(sys.prefix) / "share" / "demasked_ros" / "config" / FASTDDS_PROFILE_NAME,
    ):
        if candidate.is_file():
            return candidate
    return None


def default_ros_home(domain_id: int) -> Path:
    """A writable per-user, per-domain folder for ROS_HOME when the caller gives none."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"demasked_ros-{uid}" / f"domain-{domain_id}"


def _prepend(env: dict[str, str], name: str, entry: str) -> None:
    parts = [p for p in env.get(name, "").split(os.pathsep) if p]
    if entry not in parts:
        parts.insert(0, entry)
    env[name] = os.pathsep.join(parts)


def validate_domain_id(domain_id: int) -> int:
    """Return ``domain_id`` if Fast DDS accepts it (0..232), else raise RosEnvironmentError."""
    if isinstance(domain_id, bool) or not isinstance(domain_id, int):
        raise RosEnvironmentError(f"ROS_DOMAIN_ID must be an int, got {domain_id!r}")
    if not 0 <= domain_id <= MAX_DOMAIN_ID:
        raise RosEnvironmentError(f"ROS_DOMAIN_ID must be in 0..{MAX_DOMAIN_ID}, got {domain_id}")
    return domain_id


def ros_subprocess_env(
    domain_id: int,
    base: Mapping[str, str] | None = None,
    ros_home: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Environment for a child process that runs rclpy, confined to this host.

    Args:
        domain_id: ``ROS_DOMAIN_ID`` of the child (0..232); give each test its own.
        base: environment to start from (default: ``os.environ``); it is copied, never modified.
        ros_home: writable folder for ``ROS_HOME`` (logs go to ``<ros_home>/log``); default a
            per-domain folder under the system temp directory. It is created.

    Returns:
        A new dict: discovery forced to LOCALHOST, static peers removed, Fast DDS with the shipped
        profile (unless the base names another profile file), the built interfaces on the search
        paths, and the wheels' bootstrap flag cleared so the child sets its library path itself.
    """
    validate_domain_id(domain_id)
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_STATIC_PEERS", None)
    env.pop("ROS_LOCALHOST_ONLY", None)  # ignored by Kilted; avoid a misleading deprecation warning
    env.setdefault("RMW_IMPLEMENTATION", DEFAULT_RMW)
    profile = fastdds_profile_path()
    if profile is not None and not env.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    home = Path(ros_home) if ros_home is not None else default_ros_home(domain_id)
    log_dir = home / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    env["ROS_HOME"] = str(home)
    env["ROS_LOG_DIR"] = str(log_dir)
    venv_prefix = Path(sys.prefix)
    if (venv_prefix / "share" / "ament_index").is_dir():
        _prepend(env, "AMENT_PREFIX_PATH", str(venv_prefix))
        _prepend(env, "LD_LIBRARY_PATH", str(venv_prefix / "lib"))
    prefix = interfaces_prefix(env)
    if prefix is not None:
        _prepend(env, "AMENT_PREFIX_PATH", str(prefix))
        _prepend(env, "LD_LIBRARY_PATH", str(prefix / "lib"))
        site_dir = _python_site_dir(prefix)
        if site_dir.is_dir():
            _prepend(env, "PYTHONPATH", str(site_dir))
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    return env


def check_ros_environment(env: Mapping[str, str] | None = None, strict: bool = True) -> list[str]:
    """Check that ROS traffic of a process with ``env`` stays on this host.

    Args:
        env: environment to check (default: ``os.environ``).
        strict: True for tests, demos and benchmarks: any finding raises. False for the node on a
            real robot: findings are returned for the caller to log as warnings.

    Returns:
        The list of findings (empty when the environment is host-local and complete).

    Raises:
        RosEnvironmentError: in strict mode, when there is any finding.
    """
    env = os.environ if env is None else env
    findings: list[str] = []
    discovery = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "")
    if discovery.upper() not in SAFE_DISCOVERY_RANGES:
        findings.append(
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={discovery or '<unset>'}: discovery traffic may reach the "
            "network; set ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (source scripts/ros_env.sh)"
        )
    if env.get("ROS_STATIC_PEERS"):
        findings.append(f"ROS_STATIC_PEERS={env['ROS_STATIC_PEERS']}: traffic goes to those hosts")
    domain = env.get("ROS_DOMAIN_ID")
    if domain is None:
        findings.append("ROS_DOMAIN_ID is unset: pick a domain of your own (tests: one per test)")
    else:
        try:
            validate_domain_id(int(domain))
        except (ValueError, RosEnvironmentError):
            findings.append(f"ROS_DOMAIN_ID={domain!r} is not an integer in 0..{MAX_DOMAIN_ID}")
    for var in ("ROS_HOME", "ROS_LOG_DIR"):
        value = env.get(var)
        if value and not os.access(value, os.W_OK) and Path(value).exists():
            findings.append(f"{var}={value} is not writable")
    if strict and findings:
        raise RosEnvironmentError("unsafe ROS environment:\n  " + "\n  ".join(findings))
    return findings


def ensure_interfaces_importable() -> Path:
    """Make ``demasked_ros_interfaces`` importable and usable in this process; return its prefix.

    Needed when the process was started without ``source scripts/ros_env.sh``: the Python package
    is added to ``sys.path`` and the message libraries are preloaded (the dynamic loader only reads
    ``LD_LIBRARY_PATH`` at process start). ``LD_LIBRARY_PATH`` is extended too, because rcpputils
    looks type support libraries up along it at run time.

    Raises:
        RosEnvironmentError: when the interfaces have not been built.
    """
    prefix = interfaces_prefix()
    if prefix is None:
        raise RosEnvironmentError(
            f"{INTERFACES_PACKAGE} is not built: run `bash scripts/build_interfaces.sh` "
            "(or `colcon build` in ros2_ws/ with a ROS 2 install), then `source scripts/ros_env.sh`"
        )
    site_dir = str(_python_site_dir(prefix))
    if site_dir not in sys.path:
        sys.path.insert(0, site_dir)
    lib_dir = prefix / "lib"
    _prepend_os_environ("LD_LIBRARY_PATH", str(lib_dir))
    _prepend_os_environ("AMENT_PREFIX_PATH", str(prefix))
    pending = sorted(lib_dir.glob(f"lib{INTERFACES_PACKAGE}__*.so"))
    # Load in dependency order without knowing it: retry until no library loads any more.
    while pending:
        failed: list[Path] = []
        for library in pending:
            try:
                ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                failed.append(library)
        if len(failed) == len(pending):
            names = ", ".join(p.name for p in failed)
            raise RosEnvironmentError(f"cannot load {names} (is the ROS venv's lib on the path?)")
        pending = failed
    return prefix


def _prepend_os_environ(name: str, entry: str) -> None:
    parts = [p for p in os.environ.get(name, "").split(os.pathsep) if p]
    if entry not in parts:
        os.environ[name] = os.pathsep.join([entry, *parts])


def start_ros_python(
    args: Sequence[str],
    env: Mapping[str, str],
    **popen_kwargs: Any,
) -> subprocess.Popen[str]:
    """Start ``sys.executable *args`` with a ROS environment from :func:`ros_subprocess_env`.

    The environment is checked strictly first, so a test or demo can never start a process that
    talks to the network. Output is text; other ``subprocess.Popen`` keyword arguments pass through.
    """
    check_ros_environment(env, strict=True)
    popen_kwargs.setdefault("text", True)
    return subprocess.Popen([sys.executable, *args], env=dict(env), **popen_kwargs)
