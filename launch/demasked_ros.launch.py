# mypy: ignore-errors
# (type checkers resolve `launch` to this folder, a namespace package, instead of ROS launch)
"""Launch the demasked_ros node with a parameters file and the camera topic remapped.

For machines with a ROS 2 install (launch, launch_ros) after ``colcon build`` in ``ros2_ws/``::

    ros2 launch demasked_ros demasked_ros.launch.py image_topic:=/camera/image_raw
    ros2 launch demasked_ros demasked_ros.launch.py params_file:=/path/my.params.yaml \
        namespace:=front log_level:=debug

Arguments:
    params_file     parameters YAML (default: the package's config/demasked_ros.params.yaml)
    image_topic     camera topic remapped onto the node's ``image`` input; with
                    ``input_transport: compressed`` the node reads ``<image_topic>/compressed``
    node_name       node name (default demasked_ros; parameters files are keyed by it)
    namespace       namespace of the node (default: none)
    fastdds_profile Fast DDS profile to use ('' : leave FASTDDS_DEFAULT_PROFILES_FILE as it is;
                    default: the package's shared-memory profile config/fastdds_shm.xml)
    log_level       ROS log level (debug, info, warn, error)

The node runs ``demasked-node`` from PATH (a colcon install puts it in install/demasked_ros/bin),
which configures and activates itself. This file imports launch only inside
``generate_launch_description`` so that it can be imported (and tested) where launch is absent.
"""

from __future__ import annotations

from typing import Any

PACKAGE = "demasked_ros"
EXECUTABLE = "demasked-node"
DEFAULT_NODE_NAME = "demasked_ros"
DEFAULT_IMAGE_TOPIC = "/camera/image_raw"


def generate_launch_description() -> Any:
    """The launch description: launch arguments, the Fast DDS profile variable and the node."""
    from launch import LaunchDescription  # noqa: I001 - ruff sees this folder as first-party `launch`
    from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
    from launch_ros.actions import Node
    from launch_ros.substitutions import FindPackageShare

    share = FindPackageShare(PACKAGE)
    params_file = LaunchConfiguration("params_file")
    image_topic = LaunchConfiguration("image_topic")
    fastdds_profile = LaunchConfiguration("fastdds_profile")

    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "demasked_ros.params.yaml"]),
            description="Parameters YAML for the node",
        ),
        DeclareLaunchArgument("image_topic", default_value=DEFAULT_IMAGE_TOPIC,
                              description="Camera topic (sensor_msgs/Image) fed to the node"),
        DeclareLaunchArgument("node_name", default_value=DEFAULT_NODE_NAME, description="Node name"),
        DeclareLaunchArgument("namespace", default_value="", description="Node namespace"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
            description="Fast DDS XML profile ('' keeps FASTDDS_DEFAULT_PROFILES_FILE unchanged)",
        ),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
    ]
    set_profile = SetEnvironmentVariable(
        "FASTDDS_DEFAULT_PROFILES_FILE",
        fastdds_profile,
        condition=IfCondition(PythonExpression(["'", fastdds_profile, "' != ''"])),
    )
    node = Node(
        executable=EXECUTABLE,
        name=LaunchConfiguration("node_name"),
        namespace=LaunchConfiguration("namespace"),
        parameters=[params_file],
        remappings=[
            ("image", image_topic),
            ("image/compressed", [image_topic, "/compressed"]),
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription([*arguments, set_profile, node])
