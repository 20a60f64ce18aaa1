"""scripts/build_interfaces.sh: the installed interfaces match msg/, and the check is cheap."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "build_interfaces.sh"


def _check(workspace: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "DEMASKED_CHECK_ONLY": "1",
           "DEMASKED_WS": str(workspace), "DEMASKED_VENV": str(ROOT / ".venv")}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_installed_interfaces_are_up_to_date_with_msg() -> None:
    workspace = ROOT / "ros2_ws"
    if not (workspace / "install" / "demasked_ros_interfaces").is_dir():
        pytest.skip("interfaces not built (bash scripts/build_interfaces.sh)")
    result = _check(workspace)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_a_changed_message_makes_the_build_stale(tmp_path: Path) -> None:
    workspace = ROOT / "ros2_ws"
    stamp = workspace / "install" / "demasked_ros_interfaces" / ".demasked_build_stamp"
    if not stamp.is_file():
        pytest.skip("interfaces not built (bash scripts/build_interfaces.sh)")
    copy = tmp_path / "ws"
    package = copy / "src" / "demasked_ros_interfaces"
    shutil.copytree(workspace / "src" / "demasked_ros_interfaces", package, symlinks=False)
    (copy / "install" / "demasked_ros_interfaces").mkdir(parents=True)
    shutil.copy(stamp, copy / "install" / "demasked_ros_interfaces" / stamp.name)
    assert _check(copy).returncode == 0  # identical inputs: up to date
    message = package / "msg" / "ClassInfo.msg"
    message.write_text(message.read_text() + "\nstring extra_field\n")
    result = _check(copy)
    assert result.returncode == 3
    assert "out of date" in result.stderr
