#!/usr/bin/env bash
# Mutation testing of the code the certificate rests on (issue 13), with mutmut. Not part of CI.
#
# Usage: scripts/mutation.sh [--max-children N]
#
# * mutmut is installed into a private folder, .mutation-tools/ (gitignored), never into .venv;
#   the pinned versions below are installed there on the first run (needs PyPI once).
# * The run happens in a scratch copy of the working tree, .mutation-work/ (gitignored), so an
#   interrupted run can never leave a mutated file in the checkout.
# * Mutated modules: core/certify.py, core/geometry.py, core/masks.py, core/masks_drs.py,
#   core/resize.py and engines/certifier.py (the Certifier and the chunked executor). The node's
#   result-to-message path is left out while it moves to rosio/ (issue 12).
# * Tests: the fast core and engine tests below. mutmut records which tests call each function
#   and runs only those against that function's mutants, so each module gets its relevant subset.
# * Prints the kill rate per module and lists the survivors; docs/TESTING.md reviews them.
#
# Takes about 10-20 minutes on 2 shared cores (nice -n 19).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="$ROOT/.venv/bin/python"
TOOLS="$ROOT/.mutation-tools"
WORK="$ROOT/.mutation-work"
MAX_CHILDREN=2
while (($#)); do
    case "$1" in
        --max-children) MAX_CHILDREN="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

MODULES=(
    demasked_ros/core/certify.py
    demasked_ros/core/geometry.py
    demasked_ros/core/masks.py
    demasked_ros/core/masks_drs.py
    demasked_ros/core/resize.py
    demasked_ros/engines/certifier.py
)
TESTS=(
    tests/core/test_certify.py
    tests/core/test_masks.py
    tests/core/test_masks_drs.py
    tests/core/test_resize.py
    tests/engines/test_certifier.py
    tests/engines/test_certifier_soundness.py
    tests/engines/test_resizing.py
)
# mutmut and the dependencies the project venv lacks, pinned (installed with --no-deps so that
# nothing in .venv, e.g. pytest or coverage, is shadowed).
PINNED=(mutmut==3.8.1 libcst==1.9.0 setproctitle==1.3.8 textual==8.2.8 rich==15.0.0
        markdown-it-py==4.3.0 mdit-py-plugins==0.7.0 mdurl==0.1.2 platformdirs==4.14.9)

if [[ ! -x "$PY" ]]; then
    echo "no .venv: run scripts/setup_env.sh first" >&2
    exit 2
fi
if ! PYTHONPATH="$TOOLS" "$PY" -c "import mutmut, libcst, textual" 2>/dev/null; then
    echo "installing mutmut into $TOOLS (private; .venv is not touched)"
    "$PY" -m pip install --quiet --target "$TOOLS" --no-deps "${PINNED[@]}"
fi

# Scratch copy: tracked and untracked-but-not-ignored files of the package and tests.
rm -rf "$WORK"
mkdir -p "$WORK"
git ls-files -z --cached --others --exclude-standard -- demasked_ros tests pyproject.toml setup.cfg \
    | while IFS= read -r -d '' path; do [[ -e "$path" ]] && printf '%s\0' "$path"; done \
    | tar --null -T - -cf - | tar -xf - -C "$WORK"

quote() { local out="" item; for item in "$@"; do out+="\"$item\", "; done; printf '[%s]' "${out%, }"; }
cat >> "$WORK/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["demasked_ros"]
only_mutate = $(quote "${MODULES[@]}")
pytest_add_cli_args = ["-p", "no:cacheprovider", "-o", "addopts="]
pytest_add_cli_args_test_selection = $(quote "${TESTS[@]}")
use_git_change_detection = false
EOF

cd "$WORK"
# The mutated copy must be the one imported: no PYTHONPATH pointing at the checkout.
export PYTHONPATH="$TOOLS"
export OMP_NUM_THREADS=1 HYPOTHESIS_STORAGE_DIRECTORY="$WORK/.hypothesis"
start=$(date +%s)
nice -n 19 "$PY" -c 'import sys; from mutmut.__main__ import cli; sys.argv = ["mutmut", *sys.argv[1:]]; cli()' \
    run --max-children "$MAX_CHILDREN" > "$WORK/mutmut-run.log" 2>&1 || {
    tail -40 "$WORK/mutmut-run.log"; echo "mutmut run failed (log: $WORK/mutmut-run.log)" >&2; exit 1; }
echo "mutmut run: $(( $(date +%s) - start )) s"

"$PY" - "${MODULES[@]}" <<'EOF'
"""Kill rate per module from mutmut's .meta files (its own exit-code -> status table)."""
import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

rows, survivors = [], []
for module in sys.argv[1:]:
    meta = json.loads((Path("mutants") / (module + ".meta")).read_text())
    statuses = {name: status_by_exit_code[code] for name, code in meta["exit_code_by_key"].items()}
    counts = Counter(statuses.values())
    killed = counts["killed"] + counts["timeout"] + counts["segfault"]
    total = len(statuses)
    rows.append((module, total, killed, counts["survived"], total - killed - counts["survived"]))
    survivors += [name for name, status in statuses.items() if status != "killed" and status != "timeout"
                  and status != "segfault"]
print(f"{'module':38s} {'mutants':>7s} {'killed':>6s} {'survived':>8s} {'other':>5s} {'kill rate':>9s}")
for module, total, killed, survived, other in rows:
    rate = 100.0 * killed / total if total else 100.0
    print(f"{module:38s} {total:7d} {killed:6d} {survived:8d} {other:5d} {rate:8.1f}%")
print(f"\n{len(survivors)} not killed (review each in docs/TESTING.md; `mutmut show NAME` in .mutation-work):")
for name in sorted(survivors):
    print("  ", name)
EOF
# Diffs of the survivors, for the review.
"$PY" -c 'import sys; from mutmut.__main__ import cli; sys.argv = ["mutmut", "results"]; cli()' \
    > "$WORK/survivors.txt" 2>&1 || true
echo "survivor diffs: .mutation-work/survivors.txt (\`mutmut show NAME\` inside .mutation-work)"
