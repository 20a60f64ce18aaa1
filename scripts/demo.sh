#!/usr/bin/env bash
# The main job on the built-in defaults: sets up .venv (and the ROS 2 interfaces), starts the
# certifying node with the packaged models, feeds it a short driving clip (CamVid where
# ../shared/data/camvid exists, else procedural street scenes), records every output topic to an
# mcap bag and prints a per-frame summary. Extra arguments go to demasked-demo (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/build_interfaces.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-57}"
export ROS_HOME="${ROS_HOME:-$PWD/.ros}" ROS_LOG_DIR="${ROS_LOG_DIR:-$PWD/.ros/log}"
mkdir -p "$ROS_LOG_DIR"
source scripts/ros_env.sh
exec .venv/bin/python -m demasked_ros.apps.node.demo "$@"
