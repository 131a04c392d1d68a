"""The package layout holds: no import circles in ``signing/`` or ``api/``, nothing in ``signing`` imports
``api``, and ``api/`` keeps at most 8 modules at its top level besides its sub-packages.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a circle hidden behind a
deferred import is still a circle in the design."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("signing", "api")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts and "versions" in path.parts:
                continue
            found[module_name(path)] = path
    return found


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that module ``name`` imports (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets.add(stem)
            targets.update(f"{stem}.{alias.name}" for alias in node.names)
    resolved = set()
    for target in targets:
        # the longest known module the name lies in ("a.b.func" -> "a.b")
        parts = target.split(".")
        for i in range(len(parts), 0, -1):
            candidate = ".".join(parts[:i])
            if candidate in known:
                resolved.add(candidate)
                break
    resolved.discard(name)
    return resolved


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules, or None. Package ``__init__`` edges to their own children
    are ignored (a package re-exporting its submodules is not a circle)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def edges(node: str) -> list[str]:
        return sorted(t for t in graph[node] if not t.startswith(node + "."))

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in edges(node):
            if colour[nxt] == GREY:
                return [*stack[stack.index(nxt) :], nxt]
            if colour[nxt] == WHITE and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_signing_never_imports_api():
    offenders = {
        name: sorted(t for t in targets if t == "api" or t.startswith("api."))
        for name, targets in import_graph().items()
        if name.startswith("signing")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_api_top_level_stays_small():
    modules = sorted(p.name for p in (ROOT / "api").glob("*.py"))
    assert len(modules) <= 8, modules


def test_every_subpackage_says_what_lives_there():
    for package in PACKAGES:
        for init in (ROOT / package).rglob("__init__.py"):
            if "migrations" in init.parts:
                continue
            doc = ast.get_docstring(ast.parse(init.read_text()))
            assert doc, f"{init.relative_to(ROOT)} has no docstring"


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"p": {"p.x"}, "p.x": set()}, None),
        ({"p": {"p.x"}, "p.x": {"q"}, "q": {"r"}, "r": {"q"}}, ["q", "r", "q"]),
    ],
)
def test_cycle_finder_itself(graph, expected):
    found = find_cycle(graph)
    if expected is None:
        assert found is None
    else:
        assert found is not None and set(found) == set(expected)
