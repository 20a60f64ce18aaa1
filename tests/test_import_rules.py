"""The package's rings, checked on the source with ``ast`` (no imports are executed).

core <- engines, datasets <- rosio <- apps; training and attacks beside apps (core, engines,
datasets only). Every import counts, also those inside functions. No import cycles between
modules at module level (function-level imports may break a cycle on purpose).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "demasked_ros"
ROOT = "demasked_ros"
RINGS = ("core", "engines", "datasets", "rosio", "apps", "training", "attacks")
#: Rings of this package each ring may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "engines": {"core"},
    "datasets": {"core"},
    "rosio": {"core", "engines", "datasets"},
    "apps": {"core", "engines", "datasets", "rosio", "training", "attacks"},
    "training": {"core", "engines", "datasets"},
    "attacks": {"core", "engines", "datasets"},
}
#: Third-party modules core may use (everything else there must be the standard library).
CORE_THIRD_PARTY = {"numpy"}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, package: Path = PACKAGE) -> list[tuple[str, bool]]:
    """``(imported module, at module level?)`` for every import in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    name = module_name(path, package)
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    top_level = set(map(id, tree.body))
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        at_top = id(node) in top_level
        if isinstance(node, ast.Import):
            found += [(alias.name, at_top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[:len(base) - node.level + 1]
                module = ".".join(stem + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, at_top))
            # ``from demasked_ros.x import y`` may name the submodule ``x.y``
            found += [(f"{module}.{alias.name}", at_top) for alias in node.names]
    return found


def package_modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, package): path for path in sorted(package.rglob("*.py"))}


def ring_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == ROOT else None


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import that breaks a ring rule, as ``module -> imported (why)``."""
    modules = package_modules(package)
    problems: list[str] = []
    for name, path in modules.items():
        ring = ring_of(name)
        for imported, _ in imports(path, package):
            top = imported.split(".")[0]
            if top == ROOT:
                target = ring_of(imported)
                if ring in ALLOWED and target in RINGS and target != ring and target not in ALLOWED[ring]:
                    problems.append(f"{name} -> {imported} ({ring} may not import {target})")
            elif ring == "core" and top and top not in CORE_THIRD_PARTY | set(sys.stdlib_module_names):
                problems.append(f"{name} -> {imported} (core imports only numpy and the standard library)")
    return problems


def cycles(package: Path = PACKAGE) -> list[list[str]]:
    """Import cycles between the package's modules, following module-level imports only."""
    modules = package_modules(package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imported, at_top in imports(path, package):
            if at_top and imported in modules and imported != name:
                graph[name].add(imported)
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_ring_imports_only_inward() -> None:
    assert violations() == []


def test_there_are_no_import_cycles() -> None:
    assert cycles() == []


def test_the_node_and_the_evaluator_do_not_import_each_other() -> None:
    modules = package_modules()
    for name, path in modules.items():
        for imported, _ in imports(path):
            if name.startswith(f"{ROOT}.apps.node"):
                assert not imported.startswith(f"{ROOT}.apps.evaluate"), f"{name} -> {imported}"
            if name.startswith(f"{ROOT}.apps.evaluate"):
                assert not imported.startswith(f"{ROOT}.apps.node"), f"{name} -> {imported}"


def test_every_ring_is_a_folder_of_the_package() -> None:
    present = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert {"core", "engines", "datasets", "rosio", "apps", "training"} <= present
    assert present - {"models"} <= set(RINGS), f"a ring without a rule: {present - set(RINGS)}"


@pytest.mark.parametrize(("where", "code", "expected"), [
    ("core/bad.py", "import cv2\n", "core imports only numpy"),
    ("core/bad.py", "def f():\n    from demasked_ros.engines import x\n", "core may not import engines"),
    ("engines/bad.py", "from demasked_ros.rosio import topics\n", "engines may not import rosio"),
    ("datasets/bad.py", "from demasked_ros.apps.node import node\n", "datasets may not import apps"),
    ("rosio/bad.py", "import demasked_ros.apps.evaluate.cli\n", "rosio may not import apps"),
    ("training/bad.py", "from demasked_ros.rosio.image_codec import decode_raw\n",
     "training may not import rosio"),
    ("attacks/bad.py", "from ..apps import certify_cli\n", "attacks may not import apps"),
    ("attacks/bad.py", "from demasked_ros.rosio import messages\n", "attacks may not import rosio"),
])
def test_the_rules_catch_a_bad_import(tmp_path: Path, where: str, code: str, expected: str) -> None:
    package = tmp_path / ROOT
    (package / where).parent.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / where).parent.joinpath("__init__.py").write_text("")
    (package / where).write_text(code)
    problems = violations(package)
    assert problems and all(expected in problem for problem in problems), problems


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / ROOT
    (package / "core").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core" / "__init__.py").write_text("")
    (package / "core" / "a.py").write_text("from demasked_ros.core import b\n")
    (package / "core" / "b.py").write_text("from demasked_ros.core.a import x\n")
    (package / "core" / "c.py").write_text("def f():\n    from demasked_ros.core import a\n")
    assert cycles(package) == [["demasked_ros.core.a", "demasked_ros.core.b", "demasked_ros.core.a"]]
