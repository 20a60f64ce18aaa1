"""demasked_ros.rosio.ros_env: child ROS environments stay on this host and find the interfaces."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from demasked_ros.rosio import ros_env
from demasked_ros.rosio.ros_env import (
    RosEnvironmentError,
    check_ros_environment,
    ros_subprocess_env,
    start_ros_python,
)

UNSAFE_BASE = {
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
    "ROS_STATIC_PEERS": "192.168.1.10",
    "ROS_LOCALHOST_ONLY": "1",
    "ROS_DOMAIN_ID": "7",
    "_ROS_WHEELS_BOOTSTRAP_COMPLETE": "1",
    "PATH": "/usr/bin",
}


def test_subprocess_env_is_host_local_and_leaves_base_alone(tmp_path: Path) -> None:
    base = dict(UNSAFE_BASE)
    env = ros_subprocess_env(123, base=base, ros_home=tmp_path / "home")
    assert base == UNSAFE_BASE
    assert env["ROS_DOMAIN_ID"] == "123"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "ROS_STATIC_PEERS" not in env and "ROS_LOCALHOST_ONLY" not in env
    assert "_ROS_WHEELS_BOOTSTRAP_COMPLETE" not in env
    assert env["ROS_HOME"] == str(tmp_path / "home")
    assert Path(env["ROS_LOG_DIR"]).is_dir() and os.access(env["ROS_LOG_DIR"], os.W_OK)
    assert env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
    assert env["PATH"] == "/usr/bin"
    assert check_ros_environment(env, strict=True) == []


def test_subprocess_env_uses_the_shipped_fastdds_profile_unless_one_is_given(tmp_path: Path) -> None:
    env = ros_subprocess_env(101, base={}, ros_home=tmp_path)
    profile = Path(env["FASTDDS_DEFAULT_PROFILES_FILE"])
    assert profile.name == "fastdds_shm.xml" and profile.is_file()
    own = ros_subprocess_env(101, base={"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}, ros_home=tmp_path)
    assert own["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/mine.xml"


def test_subprocess_env_puts_built_interfaces_first_without_duplicates(tmp_path: Path) -> None:
    prefix = ros_env.interfaces_prefix()
    if prefix is None:
        pytest.skip("demasked_ros_interfaces not built (bash scripts/build_interfaces.sh)")
    lib = str(prefix / "lib")
    base = {"LD_LIBRARY_PATH": f"{lib}:/opt/other/lib"}
    env = ros_subprocess_env(102, base=base, ros_home=tmp_path)
    parts = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert parts.count(lib) == 1 and "/opt/other/lib" in parts
    assert env["PYTHONPATH"].split(os.pathsep)[0].endswith("site-packages")
    assert str(prefix) in env["AMENT_PREFIX_PATH"].split(os.pathsep)


@pytest.mark.parametrize("bad", [-1, 233, 1000, True, "5"])
def test_invalid_domain_ids_are_refused(bad: object, tmp_path: Path) -> None:
    with pytest.raises(RosEnvironmentError, match="ROS_DOMAIN_ID"):
        ros_subprocess_env(bad, base={}, ros_home=tmp_path)  # type: ignore[arg-type]


def test_check_reports_every_unsafe_setting() -> None:
    findings = check_ros_environment(UNSAFE_BASE, strict=False)
    text = "\n".join(findings)
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET" in text
    assert "ROS_STATIC_PEERS" in text
    assert len(findings) == 2
    with pytest.raises(RosEnvironmentError, match="unsafe ROS environment"):
        check_ros_environment(UNSAFE_BASE, strict=True)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["ROS_AUTOMATIC_DISCOVERY_RANGE=<unset>", "ROS_DOMAIN_ID is unset"]),
        ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF", "ROS_DOMAIN_ID": "0"}, []),
        ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "localhost", "ROS_DOMAIN_ID": "x"}, ["ROS_DOMAIN_ID='x'"]),
        ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT", "ROS_DOMAIN_ID": "3"},
         ["ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT"]),
    ],
)
def test_check_findings(env: dict[str, str], expected: list[str]) -> None:
    findings = check_ros_environment(env, strict=False)
    assert len(findings) == len(expected)
    for finding, start in zip(findings, expected, strict=True):
        assert finding.startswith(start)


def test_start_ros_python_refuses_an_unsafe_environment() -> None:
    with pytest.raises(RosEnvironmentError):
        start_ros_python(["-c", "raise SystemExit(3)"], UNSAFE_BASE)


def test_start_ros_python_runs_this_interpreter_with_the_environment(tmp_path: Path) -> None:
    env = ros_subprocess_env(103, ros_home=tmp_path)
    code = "import os, sys; print(os.environ['ROS_DOMAIN_ID'], sys.prefix)"
    process = start_ros_python(["-c", code], env, stdout=-1, stderr=-1)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.split() == ["103", sys.prefix]


def test_missing_interfaces_give_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMASKED_WS", str(tmp_path / "no_workspace"))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert ros_env.interfaces_prefix() is None
    with pytest.raises(RosEnvironmentError, match=r"build_interfaces\.sh"):
        ros_env.ensure_interfaces_importable()


def test_interfaces_found_through_ament_prefix_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = tmp_path / "opt" / "ros"
    (prefix / "share" / "demasked_ros_interfaces").mkdir(parents=True)
    (prefix / "share" / "demasked_ros_interfaces" / "package.xml").write_text("<package/>")
    env = {"DEMASKED_WS": str(tmp_path / "none"), "AMENT_PREFIX_PATH": f"/nonexistent:{prefix}"}
    assert ros_env.interfaces_prefix(env) == prefix
