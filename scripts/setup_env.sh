#!/usr/bin/env bash
# Creates/updates the project virtualenv .venv (Python 3.11: the ROS 2 Kilted wheels are cp311).
# Usage: scripts/setup_env.sh [SET ...]   sets: core dev train ros ros-build report (default: all)
# Idempotent: reinstalls only when a requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(core dev train ros ros-build report)

python_bin="${DEMASKED_PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python_bin=$(command -v "$candidate"); break
    fi
  done
fi
if [ -z "$python_bin" ]; then
  echo "setup_env: Python 3.11 is required (the ROS 2 wheels are built for cp311); set DEMASKED_PYTHON" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup_env: creating .venv with $python_bin"
  "$python_bin" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi

files=()
for set in "${sets[@]}"; do
  f="requirements/$set.txt"
  [ -f "$f" ] || { echo "setup_env: unknown requirement set '$set'" >&2; exit 1; }
  files+=("$f")
done
stamp=.venv/.requirements-$(echo "${sets[*]}" | tr ' ' '-').sha
digest=$(cat "${files[@]}" setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  echo "setup_env: installing ${sets[*]}"
  args=()
  for f in "${files[@]}"; do args+=(-r "$f"); done
  .venv/bin/python -m pip install -q --disable-pip-version-check "${args[@]}"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$digest" > "$stamp"
fi
