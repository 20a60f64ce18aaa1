#!/usr/bin/env bash
# Mutation testing of the code the certificate rests on (issue 13), with mutmut. Not part of CI.
#
# Usage: scripts/mutation.sh [--max-children N] [--report | --recheck] [GROUP...]
#   GROUP      certify geometry masks resize certifier (default: all)
#   --report   only print the table of the last run(s) in .mutation-work
#   --recheck  after adding tests: rerun only the not-killed mutants of the last run with the
#              current tests (refused if the mutated modules changed since that run)
#
# * mutmut is installed into a private folder, .mutation-tools/ (gitignored), never into .venv;
#   the pinned versions below are installed there on the first run (needs PyPI once).
# * Each group runs in a scratch copy of the working tree, .mutation-work/GROUP/ (gitignored), so
#   an interrupted run can never leave a mutated file in the checkout.
# * Mutated: core/certify.py, core/geometry.py, core/masks.py, core/masks_drs.py, core/resize.py
#   and engines/certifier.py + engines/executors.py (the Certifier and the chunked executor). The node's
#   result-to-message path is left out while it moves to rosio/ (issue 12).
# * Each group runs only its fast tests (below); within them mutmut records which tests call each
#   function and runs just those against that function's mutants.
# * Prints the kill rate per module and the survivors; their diffs go to
#   .mutation-work/survivors.diff. docs/TESTING.md reviews every survivor.
#
# Measured on 2 cores shared with other jobs (load 10-15, nice -n 19): certify 30 min, geometry
# 22 min, resize 7 min, certifier ~55 min, masks > 1 h; far less on an idle machine. Groups can
# run separately (scripts/mutation.sh certify geometry ...).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="$ROOT/.venv/bin/python"
TOOLS="$ROOT/.mutation-tools"
WORK="$ROOT/.mutation-work"
MAX_CHILDREN=2
REPORT_ONLY=0
RECHECK=0
SELECTED=()
ALL_GROUPS=(certify geometry masks resize certifier)
while (($#)); do
    case "$1" in
        --max-children) MAX_CHILDREN="$2"; shift 2 ;;
        --report) REPORT_ONLY=1; shift ;;
        --recheck) RECHECK=1; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) SELECTED+=("$1"); shift ;;
    esac
done
((${#SELECTED[@]})) || SELECTED=("${ALL_GROUPS[@]}")

# Each group: the modules mutated, and the fast tests run against them.
modules_of() {
    case "$1" in
        certify) echo demasked_ros/core/certify.py ;;
        geometry) echo demasked_ros/core/geometry.py ;;
        masks) echo demasked_ros/core/masks.py demasked_ros/core/masks_drs.py ;;
        resize) echo demasked_ros/core/resize.py ;;
        certifier) echo demasked_ros/engines/certifier.py demasked_ros/engines/executors.py ;;
        *) echo "unknown group $1 (groups: ${ALL_GROUPS[*]})" >&2; return 2 ;;
    esac
}
tests_of() {
    case "$1" in
        certify) echo tests/core/test_certify.py ;;
        geometry) echo tests/core/test_masks.py tests/core/test_masks_drs.py ;;
        masks) echo tests/core/test_masks.py tests/core/test_masks_drs.py ;;
        resize) echo tests/core/test_resize.py tests/engines/test_resizing.py ;;
        certifier) echo tests/engines/test_certifier.py tests/engines/test_certifier_soundness.py ;;
    esac
}
for group in "${SELECTED[@]}"; do modules_of "$group" > /dev/null; done

# mutmut and the dependencies the project venv lacks, pinned, installed with --no-deps so that
# nothing in .venv (pytest, coverage, click) is shadowed.
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

quote() { local out="" item; for item in "$@"; do out+="\"$item\", "; done; printf '[%s]' "${out%, }"; }
mutmut() {
    nice -n 19 "$PY" -c 'import sys; from mutmut.__main__ import cli; sys.argv = ["mutmut", *sys.argv[1:]]; cli()' "$@"
}
# The mutated copy must be the one imported: no PYTHONPATH pointing at the checkout.
export PYTHONPATH="$TOOLS" OMP_NUM_THREADS=1

copy_tree() {  # copy_tree DEST PATHS...: tracked and untracked-but-not-ignored files
    local dest="$1"; shift
    git ls-files -z --cached --others --exclude-standard -- "$@" \
        | while IFS= read -r -d '' path; do [[ -e "$path" ]] && printf '%s\0' "$path"; done \
        | tar --null -T - -cf - | tar -xf - -C "$dest"
}

for group in "${SELECTED[@]}"; do
    ((RECHECK)) || break
    dir="$WORK/$group"
    [[ -d "$dir/mutants" ]] || { echo "no previous run of group $group to recheck" >&2; exit 2; }
    for module in $(modules_of "$group"); do
        cmp -s "$module" "$dir/$module" || { echo "$module changed since the last run: rerun it" >&2; exit 2; }
    done
    mapfile -t names < <(cd "$dir" && "$PY" - <<'PYTHON'
import json
from pathlib import Path

from mutmut.stats import status_by_exit_code

for meta in Path("mutants").rglob("*.py.meta"):
    for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
        if status_by_exit_code[code] not in ("killed", "timeout", "segfault"):
            print(name)
PYTHON
)
    ((${#names[@]})) || continue
    rm -rf "$dir/tests" "$dir/mutants/mutmut-stats.json"  # new tests: collect the call stats again
    copy_tree "$dir" tests
    start=$(date +%s)
    if ! (cd "$dir" && HYPOTHESIS_STORAGE_DIRECTORY="$dir/.hypothesis" \
            mutmut run --max-children "$MAX_CHILDREN" "${names[@]}" > mutmut-recheck.log 2>&1); then
        tail -c 3000 "$dir/mutmut-recheck.log"; echo "recheck failed for group $group" >&2; exit 1
    fi
    echo "group $group: rechecked ${#names[@]} mutants in $(( $(date +%s) - start )) s"
done

for group in "${SELECTED[@]}"; do
    ((REPORT_ONLY || RECHECK)) && break
    read -r -a modules <<< "$(modules_of "$group")"
    read -r -a tests <<< "$(tests_of "$group")"
    dir="$WORK/$group"
    # Scratch copy: tracked and untracked-but-not-ignored files of the package and the tests.
    rm -rf "$dir"
    mkdir -p "$dir"
    copy_tree "$dir" demasked_ros tests pyproject.toml setup.cfg
    {
        echo
        echo "[tool.mutmut]"
        echo 'source_paths = ["demasked_ros"]'
        echo "only_mutate = $(quote "${modules[@]}")"
        echo 'pytest_add_cli_args = ["-p", "no:cacheprovider"]'
        echo "pytest_add_cli_args_test_selection = $(quote "${tests[@]}")"
        echo "use_git_change_detection = false"
    } >> "$dir/pyproject.toml"
    start=$(date +%s)
    if ! (cd "$dir" && HYPOTHESIS_STORAGE_DIRECTORY="$dir/.hypothesis" \
            mutmut run --max-children "$MAX_CHILDREN" > mutmut-run.log 2>&1); then
        tail -c 3000 "$dir/mutmut-run.log"
        echo "mutmut run failed for group $group (log: $dir/mutmut-run.log)" >&2
        exit 1
    fi
    echo "group $group: $(( $(date +%s) - start )) s"
done

# Kill rate per module, from mutmut's .meta files and its own exit-code -> status table.
"$PY" - "$WORK" "${SELECTED[@]}" <<'PYTHON'
import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

work, groups = Path(sys.argv[1]), sys.argv[2:]
work.mkdir(parents=True, exist_ok=True)
killed_states = {"killed", "timeout", "segfault"}
print(f"{'module':34s} {'mutants':>7s} {'checked':>7s} {'killed':>6s} {'survived':>8s} {'kill rate':>9s}")
survivors = []
for group in groups:
    for meta_path in sorted((work / group / "mutants").rglob("*.py.meta")):
        meta = json.loads(meta_path.read_text())
        statuses = {name: status_by_exit_code[code] for name, code in meta["exit_code_by_key"].items()}
        if not statuses:
            continue
        counts = Counter(statuses.values())
        killed = sum(counts[s] for s in killed_states)
        checked = len(statuses) - counts["not checked"]
        module = str(meta_path.relative_to(work / group / "mutants"))[: -len(".meta")]
        rate = f"{100.0 * killed / checked:8.1f}%" if checked else "      -  "
        print(f"{module:34s} {len(statuses):7d} {checked:7d} {killed:6d} {checked - killed:8d} {rate}")
        survivors += [(group, n, s) for n, s in statuses.items() if s not in killed_states | {"not checked"}]
print(f"\n{len(survivors)} checked and not killed (each reviewed in docs/TESTING.md):")
with open(work / "survivors.txt", "w") as out:
    for group, name, status in sorted(survivors):
        print(f"  {name}  [{status}]")
        out.write(f"{group} {name}\n")
PYTHON
# The diff of every survivor, for the review.
while read -r group name; do
    (cd "$WORK/$group" && mutmut show "$name" < /dev/null)
done < "$WORK/survivors.txt" > "$WORK/survivors.diff" 2>&1 || true
echo "survivor diffs: .mutation-work/survivors.diff"
