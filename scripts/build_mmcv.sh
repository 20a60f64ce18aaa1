#!/usr/bin/env bash
# Build mmcv 2.1.0 from source for the pinned torch (2.13.0) and install mmsegmentation, so that
# demasked_ros.engines.mmseg_adapter.MmsegSegmenter (the paper's model zoo) can be used.
#
# Why a script: mmcv publishes no wheel for this torch version; `pip wheel` compiles its C++/CUDA
# ops, which takes ~15-25 minutes on a few cores. It is deliberately NOT part of the default CI.
#
# Usage:  scripts/build_mmcv.sh [VENV_DIR] [WHEEL_DIR]
#   VENV_DIR   virtual environment to install into (default: .venv)
#   WHEEL_DIR  where the built wheel is kept for reuse (default: .whl)
# Environment: MAX_JOBS (parallel compile jobs, default: nproc), MMCV_WITH_OPS=1 (full ops).
# Afterwards: `.venv/bin/python -m pytest tests/engines/test_mmseg_adapter.py` runs the adapter's
# tests (they are skipped wherever mmseg is not importable).
set -euo pipefail

VENV_DIR="${1:-.venv}"
WHEEL_DIR="${2:-.whl}"
PY="${VENV_DIR}/bin/python"
[ -x "${PY}" ] || { echo "no python at ${PY}; create the venv first" >&2; exit 2; }

"${PY}" -c 'import torch, sys; v = torch.__version__.split("+")[0]; sys.exit(0 if v == "2.13.0" else "torch must stay ==2.13.0, found " + v)'

# Build tooling mmcv's setup.py needs (newer setuptools break its build, older lack PEP 639).
"${PY}" -m pip install 'setuptools>=77.0.3,<81' wheel ninja
"${PY}" -m pip install 'mmengine>=0.10,<1'

mkdir -p "${WHEEL_DIR}"
export MMCV_WITH_OPS="${MMCV_WITH_OPS:-1}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
# --no-build-isolation: compile against the torch already in the venv (never pull another torch).
"${PY}" -m pip wheel --no-build-isolation --no-deps -w "${WHEEL_DIR}" mmcv==2.1.0
"${PY}" -m pip install --no-deps "${WHEEL_DIR}"/mmcv-2.1.0-*.whl
# mmseg 1.2.x pins mmcv<2.2; install without letting pip touch torch or mmcv.
"${PY}" -m pip install --no-deps 'mmsegmentation==1.2.2'
"${PY}" -m pip install ftfy regex prettytable scipy matplotlib  # mmseg runtime deps (skipped by --no-deps)
"${PY}" -c 'import mmcv, mmseg; print("mmcv", mmcv.__version__, "mmseg", mmseg.__version__)'
