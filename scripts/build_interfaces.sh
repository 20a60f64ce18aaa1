#!/usr/bin/env bash
# Builds the demasked_ros ROS 2 interfaces (ros2_ws/src/demasked_ros_interfaces) with colcon,
# using the ROS 2 Kilted PyPI wheels installed in the project's virtual environment.
#
# Usage:   bash scripts/build_interfaces.sh            (from anywhere)
# Env:     DEMASKED_VENV    virtual environment to use (default: <repo>/.venv)
#          DEMASKED_WS      colcon workspace (default: <repo>/ros2_ws)
#          DEMASKED_FORCE=1 rebuild even when nothing changed
#          DEMASKED_CHECK_ONLY=1 build nothing: exit 0 when the build is up to date, 3 when not
# Then:    source scripts/ros_env.sh
#
# Idempotent: when the message files, the CMakeLists/package.xml and the venv's Python are unchanged
# since the last successful build, it prints a line and exits at once. Only the interfaces package is
# built here; the Python package demasked_ros itself is installed with `pip install -e .`.
# Users with a normal ROS 2 install do not need this script: `cd ros2_ws && colcon build`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DEMASKED_VENV:-$REPO/.venv}"
WS="${DEMASKED_WS:-$REPO/ros2_ws}"
PKG=demasked_ros_interfaces
PY="$VENV/bin/python"

die() { echo "build_interfaces: error: $*" >&2; exit 1; }

[ -x "$PY" ] || die "no Python at $PY (create the venv first: scripts/setup_env.sh)"
[ -x "$VENV/bin/colcon" ] || die "colcon not in $VENV (pip install -r requirements/ros-build.txt)"
[ -f "$VENV/share/rosidl_default_generators/cmake/rosidl_default_generatorsConfig.cmake" ] ||
  die "rosidl_default_generators not in $VENV/share (pip install -r requirements/ros-build.txt)"
command -v cmake >/dev/null || die "cmake not found (apt-get install cmake g++)"
command -v c++ >/dev/null || die "a C++ compiler not found (apt-get install g++)"

# Fingerprint of everything that determines the build output.
fingerprint() {
  {
    cat "$WS/src/$PKG/CMakeLists.txt" "$WS/src/$PKG/package.xml" "$WS/src/$PKG"/msg/*.msg
    "$PY" -c 'import sys; print(sys.version)'
    echo "$VENV"
    # Rebuild when the ROS wheels change (rosidl generators, message packages).
    ls "$VENV"/lib/python3*/site-packages | grep -E '^ros_.*\.dist-info$' || true
  } | sha256sum | cut -d' ' -f1
}
STAMP="$WS/install/$PKG/.demasked_build_stamp"
FP="$(fingerprint)"
if [ "${DEMASKED_FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$FP" ]; then
  echo "build_interfaces: $PKG is up to date ($WS/install)"
  exit 0
fi
if [ "${DEMASKED_CHECK_ONLY:-0}" = 1 ]; then
  echo "build_interfaces: $PKG is missing or out of date; run bash scripts/build_interfaces.sh" >&2
  exit 3
fi

# The wheels' ament/CMake prefix is the venv itself.
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"
export LD_LIBRARY_PATH="$VENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Let the bootstrapper (.pth) re-exec the interpreter with its own library path.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
export PYTHONDONTWRITEBYTECODE=1

PY_INCLUDE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
[ -f "$PY_INCLUDE/Python.h" ] || die "Python headers missing at $PY_INCLUDE (apt-get install python3-dev)"
NUMPY_INCLUDE="$("$PY" -c 'import numpy; print(numpy.get_include())')"

export CMAKE_BUILD_PARALLEL_LEVEL="${DEMASKED_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
cd "$WS"
echo "build_interfaces: building $PKG in $WS (venv $VENV)"
"$VENV/bin/colcon" --log-base "$WS/log" build \
  --base-paths "$WS/src" \
  --build-base "$WS/build" --install-base "$WS/install" \
  --packages-select "$PKG" \
  --event-handlers summary- status- \
  --cmake-args \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_TESTING=OFF \
    "-DPython3_EXECUTABLE=$PY" \
    "-DPython3_INCLUDE_DIR=$PY_INCLUDE" \
    "-DPython3_NumPy_INCLUDE_DIR=$NUMPY_INCLUDE" \
  </dev/null

# Smoke test: the generated Python package imports and its C type support serializes.
PREFIX="$WS/install/$PKG"
SITE="$(ls -d "$PREFIX"/lib/python3*/site-packages)"
PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" LD_LIBRARY_PATH="$PREFIX/lib:$LD_LIBRARY_PATH" \
  "$PY" -c '
from rclpy.serialization import deserialize_message, serialize_message
from demasked_ros_interfaces.msg import CertificationStatus, ClassInfo
for kind in (CertificationStatus, ClassInfo):
    assert deserialize_message(serialize_message(kind()), kind) == kind()
' || die "the built $PKG does not import or serialize (see the errors above)"

echo "$FP" >"$STAMP"
echo "build_interfaces: done; now: source scripts/ros_env.sh"
