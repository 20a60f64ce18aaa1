#!/usr/bin/env bash
# One command for a GPU machine: the GPU path's tests and benchmark, then one summary table.
#
#   scripts/gpu_check.sh            # on a CUDA machine: pytest -m gpu + bench_gpu.py --quick --device cuda
#   scripts/gpu_check.sh --cpu      # same script forced onto device cpu (checks the script itself)
#
# Expects Python with torch, numpy, opencv-python-headless, onnxruntime and pytest already
# installed; installs nothing, needs no network and no ROS: rclpy, rosbags and ray are blocked
# (sys.modules[name] = None) in every Python process it starts, so a stray import fails loudly.
# Budget on a GPU: 5 minutes (pytest <= 150 s, benchmark <= 120 s). Logs and the benchmark's JSON go to
# $OUT when set (the device runner collects it), else to a temporary folder.
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
export PYTHONPATH=$REPO
export PYTHONDONTWRITEBYTECODE=1
DEVICE=cuda
TEST_LIMIT=150
BENCH_LIMIT=120
BENCH_ARGS=()
if [ "${1:-}" = "--cpu" ]; then  # script check on a (slow, shared) CPU: one mode, one repeat, more time
    DEVICE=cpu TEST_LIMIT=600 BENCH_LIMIT=600 BENCH_ARGS=(--modes recovery --repeats 1)
fi
PY=${PYTHON:-python3}
[ -x "$REPO/.venv/bin/python" ] && [ -z "${PYTHON:-}" ] && PY=$REPO/.venv/bin/python
LOGS=${OUT:-$(mktemp -d)}
mkdir -p "$LOGS"
BLOCK='import sys
for _name in ("rclpy", "rosbags", "ray"):
    sys.modules[_name] = None  # importing them now raises ImportError
'
TESTS="tests/engines/test_cuda_executor.py tests/engines/test_torch_twins.py tests/engines/test_device_aggregate.py tests/engines/test_executor_choice.py"
START=$(date +%s)

echo "== environment"
"$PY" - <<EOF 2>&1 | tee "$LOGS/env.txt"
$BLOCK
import platform, numpy, cv2, onnxruntime, torch
print(f"python {platform.python_version()}  torch {torch.__version__}  numpy {numpy.__version__}  "
      f"cv2 {cv2.__version__}  onnxruntime {onnxruntime.__version__}")
print(f"cuda available: {torch.cuda.is_available()}  "
      f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() else '-'}")
import demasked_ros.engines.certifier, demasked_ros.engines.cuda_executor, demasked_ros.engines.defaults
import demasked_ros.engines.device_aggregate, demasked_ros.engines.torch_backend, demasked_ros.engines.torch_twins
import tests.engines.test_cuda_executor, tests.engines.test_torch_twins, tests.engines.test_device_aggregate
import tests.engines.test_executor_choice, demasked_ros.engines.factory
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("rclpy", "rosbags", "ray") and sys.modules[m])
print("imports without rclpy/rosbags/ray: ok" if not leaked else f"LEAKED: {leaked}")
EOF
ENV_RC=${PIPESTATUS[0]}
if [ "$DEVICE" = cuda ] && ! grep -q "cuda available: True" "$LOGS/env.txt"; then
    echo "torch sees no CUDA device; use --cpu to check the script on a CPU machine"; exit 2
fi

echo "== pytest ($([ "$DEVICE" = cuda ] && echo "-m gpu" || echo "cpu variants"))"
MARK="gpu"
[ "$DEVICE" = cpu ] && MARK="not gpu"
timeout "$TEST_LIMIT" "$PY" - "$MARK" $TESTS <<EOF 2>&1 | tee "$LOGS/pytest.txt" | tail -25
$BLOCK
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-o", "addopts=", "-W", "ignore::pytest.PytestConfigWarning",
                      "-m", sys.argv[1], *sys.argv[2:]]))
EOF
TEST_RC=${PIPESTATUS[0]}

echo "== bench_gpu.py --quick --device $DEVICE"
timeout "$BENCH_LIMIT" "$PY" - --quick --device "$DEVICE" "${BENCH_ARGS[@]}" --json "$LOGS/bench.json" <<EOF 2>&1 | tee "$LOGS/bench.txt"
$BLOCK
import runpy
sys.argv = ["benchmarks/bench_gpu.py", *sys.argv[1:]]
runpy.run_path("benchmarks/bench_gpu.py", run_name="__main__")
EOF
BENCH_RC=${PIPESTATUS[0]}

echo
echo "== summary (device $DEVICE, $(( $(date +%s) - START )) s, logs in $LOGS)"
"$PY" - "$LOGS" "$ENV_RC" "$TEST_RC" "$BENCH_RC" <<'EOF'
import json, re, sys
from pathlib import Path
logs, env_rc, test_rc, bench_rc = Path(sys.argv[1]), *map(int, sys.argv[2:])
tail = (logs / "pytest.txt").read_text().strip().splitlines() if (logs / "pytest.txt").exists() else []
verdict = next((line for line in reversed(tail) if re.search(r"passed|failed|error|no tests ran", line)), "?")
print(f"{'check':<36} {'result':<44}")
print(f"{'imports (no rclpy/rosbags/ray)':<36} {'ok' if env_rc == 0 else f'FAILED (rc {env_rc})':<44}")
print(f"{'pytest':<36} {verdict.strip('= ')[:44]:<44}" + ("" if test_rc == 0 else f" rc {test_rc}"))
bench = logs / "bench.json"
if bench_rc == 0 and bench.exists():
    report = json.loads(bench.read_text())
    best = {}
    for row in report["rows"]:
        key = (row["mode"], row["size"])
        if key not in best or row["p50_ms"] < best[key]["p50_ms"]:
            best[key] = row
    for (mode, size), row in best.items():
        print(f"{mode + ' ' + size + ' K=' + str(row['k']):<36} p50 {row['p50_ms']:8.2f} ms  p95 {row['p95_ms']:8.2f} ms"
              f"  {row['fps']:7.1f} fps  (S={row['streams']} {row['batching']}, K/1 {row['ratio']:.2f})")
    for label, value, need, met in report["targets"]:
        print(f"{'target: ' + label:<36} {value:9.2f} {need:<12} {'MET' if met else 'not met'}")
else:
    print(f"{'bench_gpu.py':<36} FAILED (rc {bench_rc})")
sys.exit(0 if env_rc == test_rc == bench_rc == 0 else 1)
EOF
