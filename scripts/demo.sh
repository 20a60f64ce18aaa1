#!/usr/bin/env bash
# The main job on the built-in defaults: sets up .venv (and the ROS 2 interfaces), starts the
# certifying node with the packaged models, feeds it a short driving clip, records every output
# topic to an mcap bag, writes a contact sheet PNG next to it and says what it showed. Input: CamVid
# from $DEMASKED_CAMVID, else ../shared/data/camvid, else ~/.local/share/demasked_ros/camvid (where
# `.venv/bin/demasked-fetch-data camvid` puts it), else procedural street scenes (docs/DATA.md).
# Extra arguments go to demasked-demo (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/build_interfaces.sh
# Network rule: localhost-only DDS discovery (forced, whatever the caller set) and a domain of
# our own; ros_env.sh adds the interfaces, the Fast DDS profile and a writable ROS_HOME.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-57}"
# shellcheck disable=SC1091
source scripts/ros_env.sh
exec .venv/bin/python -m demasked_ros.apps.node.demo "$@"
