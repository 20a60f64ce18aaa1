"""The files shipped for ROS users: parameters YAML, launch file, RViz layout, Fast DDS profile."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from demasked_ros.apps.node.params import PARAMETERS

yaml = pytest.importorskip("yaml", reason="PyYAML comes with the ROS wheels (requirements/ros.txt)")

ROOT = Path(__file__).resolve().parents[3]
PARAMS_FILE = ROOT / "config" / "demasked_ros.params.yaml"
LAUNCH_FILE = ROOT / "launch" / "demasked_ros.launch.py"
RVIZ_FILE = ROOT / "config" / "demasked_ros.rviz"
FASTDDS_FILE = ROOT / "config" / "fastdds_shm.xml"
NODE_OUTPUTS = ("/demasked_ros/overlay", "/demasked_ros/labels", "/demasked_ros/certification")


def test_params_file_lists_every_parameter_at_its_default() -> None:
    content = yaml.safe_load(PARAMS_FILE.read_text())
    values = content["demasked_ros"]["ros__parameters"]
    assert list(values) == [spec.name for spec in PARAMETERS]
    for spec in PARAMETERS:
        assert values[spec.name] == spec.default, spec.name


def test_params_file_documents_every_parameter() -> None:
    lines = PARAMS_FILE.read_text().splitlines()
    for spec in PARAMETERS:
        index = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{spec.name}:"))
        assert lines[index - 1].strip().startswith("#"), f"{spec.name} has no comment above it"


@pytest.mark.ros
def test_params_file_loads_into_the_node_declarations(ros_interfaces: Path, ros_python: Any) -> None:
    code = textwrap.dedent(
        f"""
        import rclpy
        from demasked_ros.apps.node.params import config_from_values
        from demasked_ros.apps.node.ros_params import declare_parameters, read_parameters
        rclpy.init(args=["x", "--ros-args", "--params-file", {str(PARAMS_FILE)!r}, "-p", "k:=9"])
        node = rclpy.create_node("demasked_ros")
        problems = declare_parameters(node)
        config = config_from_values(read_parameters(node))
        print("RESULT", len(problems), config.mode, config.k, config.scheme, list(config.class_names))
        node.destroy_node()
        rclpy.shutdown()
        """
    )
    process = ros_python("-c", code)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    result = next(line for line in out.splitlines() if line.startswith("RESULT"))
    assert result.split(maxsplit=5)[1:] == ["0", "recovery", "9", "column", "[]"]


def _load_launch_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("demasked_ros_launch", LAUNCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_file_is_valid_python_and_imports_without_launch() -> None:
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")
    before = set(sys.modules)
    module = _load_launch_module()
    assert callable(module.generate_launch_description)
    imported = set(sys.modules) - before
    assert not [name for name in imported if name.split(".")[0] in ("launch", "launch_ros")]


class _Recorder:
    """Stands in for every launch/launch_ros class: remembers its arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


def _fake_launch_modules(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[_Recorder]]:
    classes: dict[str, type[_Recorder]] = {}
    layout = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "SetEnvironmentVariable"],
        "launch.conditions": ["IfCondition"],
        "launch.substitutions": ["LaunchConfiguration", "PathJoinSubstitution", "PythonExpression"],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
        "launch_ros.substitutions": ["FindPackageShare"],
    }
    for module_name, names in layout.items():
        module = types.ModuleType(module_name)
        for name in names:
            classes[name] = type(name, (_Recorder,), {})
            setattr(module, name, classes[name])
        monkeypatch.setitem(sys.modules, module_name, module)
    return classes


def test_launch_description_runs_the_node_with_params_and_remappings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    classes = _fake_launch_modules(monkeypatch)
    description = _load_launch_module().generate_launch_description()
    actions: list[Any] = description.args[0]
    declared = {a.args[0]: a for a in actions if isinstance(a, classes["DeclareLaunchArgument"])}
    assert set(declared) == {"params_file", "image_topic", "node_name", "namespace", "fastdds_profile",
                             "log_level"}
    assert declared["image_topic"].kwargs["default_value"] == "/camera/image_raw"
    params_default = declared["params_file"].kwargs["default_value"].args[0]
    assert params_default[1:] == ["config", "demasked_ros.params.yaml"]
    assert (ROOT / "/".join(params_default[1:])).is_file()
    (node,) = [a for a in actions if isinstance(a, classes["Node"])]
    assert node.kwargs["executable"] == "demasked-node"
    assert node.kwargs["parameters"][0].args == ("params_file",)
    remaps = dict((src, dst) for src, dst in node.kwargs["remappings"])
    assert remaps["image"].args == ("image_topic",)
    assert remaps["image/compressed"][1] == "/compressed"
    (env,) = [a for a in actions if isinstance(a, classes["SetEnvironmentVariable"])]
    assert env.args[0] == "FASTDDS_DEFAULT_PROFILES_FILE"


def test_rviz_layout_shows_camera_and_node_outputs() -> None:
    layout = yaml.safe_load(RVIZ_FILE.read_text())
    displays = layout["Visualization Manager"]["Displays"]
    topics = [d["Topic"]["Value"] for d in displays]
    assert all(d["Class"] == "rviz_default_plugins/Image" for d in displays)
    assert "/camera/image_raw" in topics
    for output in NODE_OUTPUTS:
        assert output in topics


def test_fastdds_profile_shm_holds_four_full_hd_frames_and_udp_is_loopback_only() -> None:
    ns = {"dds": "http://www.eprosima.com"}
    root = ET.parse(FASTDDS_FILE).getroot()
    descriptors = {d.findtext("dds:transport_id", namespaces=ns) or "": d
                   for d in root.iterfind(".//dds:transport_descriptor", ns)}
    kinds = sorted(d.findtext("dds:type", namespaces=ns) or "" for d in descriptors.values())
    assert kinds == ["SHM", "UDPv4"]
    shm = next(d for d in descriptors.values() if d.findtext("dds:type", namespaces=ns) == "SHM")
    assert int(shm.findtext("dds:segment_size", namespaces=ns) or 0) >= 4 * 1920 * 1080 * 3
    udp = next(d for d in descriptors.values() if d.findtext("dds:type", namespaces=ns) == "UDPv4")
    addresses = [a.text for a in udp.iterfind(".//dds:address", ns)]
    assert addresses == ["127.0.0.1"]
    participant = root.find(".//dds:participant", ns)
    assert participant is not None and participant.get("is_default_profile") == "true"
    assert participant.findtext(".//dds:useBuiltinTransports", namespaces=ns) == "false"
    used = [t.text or "" for t in participant.iterfind(".//dds:userTransports/dds:transport_id", ns)]
    assert sorted(used) == sorted(descriptors)
