# Environment for running demasked_ros with ROS 2 from the PyPI wheels. Source it:
#
#     source scripts/ros_env.sh          (bash or zsh, from anywhere)
#
# - puts the interfaces built by scripts/build_interfaces.sh (ros2_ws/install) on PYTHONPATH,
#   LD_LIBRARY_PATH and AMENT_PREFIX_PATH (the venv's own ROS prefix too);
# - RMW_IMPLEMENTATION=rmw_fastrtps_cpp with the shipped Fast DDS profile (config/fastdds_shm.xml:
#   shared memory for camera frames + UDP on localhost);
# - ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless already set (no multicast to the network);
# - ROS_DOMAIN_ID defaults to 42 when unset (tests pick their own ids);
# - ROS_HOME / ROS_LOG_DIR default to a writable folder (<repo>/.ros, or $TMPDIR when read-only).
# Existing values of ROS_DOMAIN_ID, ROS_HOME, ROS_LOG_DIR, FASTDDS_DEFAULT_PROFILES_FILE and
# ROS_AUTOMATIC_DISCOVERY_RANGE are kept, so a robot's setup can override them.
# Re-sourcing is harmless: paths are not added twice.

if [ -n "${BASH_SOURCE:-}" ]; then
  _dm_script="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
  # shellcheck disable=SC2296
  _dm_script="${(%):-%x}"
else
  _dm_script="$0"
fi
DEMASKED_REPO="$(cd "$(dirname "$_dm_script")/.." && pwd)"
export DEMASKED_REPO
_dm_venv="${DEMASKED_VENV:-$DEMASKED_REPO/.venv}"
_dm_install="${DEMASKED_WS:-$DEMASKED_REPO/ros2_ws}/install"
_dm_pyver="$("$_dm_venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || echo 3.11)"

# Prepend $2 to the colon-separated variable named $1 unless it is already there.
_dm_prepend() {
  eval "_dm_cur=\"\${$1:-}\""
  case ":$_dm_cur:" in
    *":$2:"*) ;;
    *) if [ -n "$_dm_cur" ]; then export "$1=$2:$_dm_cur"; else export "$1=$2"; fi ;;
  esac
}

if [ -d "$_dm_venv/share/ament_index" ]; then
  _dm_prepend AMENT_PREFIX_PATH "$_dm_venv"
  _dm_prepend CMAKE_PREFIX_PATH "$_dm_venv"
  _dm_prepend LD_LIBRARY_PATH "$_dm_venv/lib"
fi
if [ -d "$_dm_install/demasked_ros_interfaces" ]; then
  _dm_prefix="$_dm_install/demasked_ros_interfaces"
  _dm_prepend AMENT_PREFIX_PATH "$_dm_prefix"
  _dm_prepend CMAKE_PREFIX_PATH "$_dm_prefix"
  _dm_prepend LD_LIBRARY_PATH "$_dm_prefix/lib"
  _dm_prepend PYTHONPATH "$_dm_prefix/lib/python$_dm_pyver/site-packages"
else
  echo "ros_env.sh: warning: $_dm_install/demasked_ros_interfaces not built; run scripts/build_interfaces.sh" >&2
fi

export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$DEMASKED_REPO/config/fastdds_shm.xml}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"
if [ -z "${ROS_HOME:-}" ]; then
  if [ -w "$DEMASKED_REPO" ]; then
    ROS_HOME="$DEMASKED_REPO/.ros"
  else
    ROS_HOME="${TMPDIR:-/tmp}/demasked_ros-$(id -u)/ros"
  fi
  export ROS_HOME
fi
export ROS_LOG_DIR="${ROS_LOG_DIR:-$ROS_HOME/log}"
mkdir -p "$ROS_LOG_DIR" 2>/dev/null || true
# The wheels' bootstrapper re-execs Python once with its own LD_LIBRARY_PATH; let it do so.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

unset _dm_script _dm_venv _dm_install _dm_pyver _dm_prefix _dm_cur
unset -f _dm_prepend
