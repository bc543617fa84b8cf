"""The package's shape, checked from its source: no import circle, no module over 400
lines, no module reaching into another module's private names (CONTRIBUTING.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_dockervol

PACKAGE = Path(pytest_dockervol.__file__).parent
MODULES = {path.stem: path for path in sorted(PACKAGE.glob("*.py"))}
#: The docker SDK's private request helpers, used in one place on purpose (see its docstring).
ALLOWED_PRIVATE = {("_engine", name) for name in ("_url", "_get", "_raise_for_status")} | {
    ("_engine", "_stream_raw_result")
}


def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))


def _imports(module: str) -> set[str]:
    """The package's modules this one imports, wherever the import stands (type-only too)."""
    found: set[str] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    found.add(node.module)
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("pytest_dockervol."):
                found.add(node.module.split(".", 1)[1])
    return found & set(MODULES)


def _defined_private_names(module: str) -> set[str]:
    """Private names a module defines: functions, classes, attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_at_most_400_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= 400, f"{module}.py has {lines} lines: split it by job"


def test_no_import_circle() -> None:
    graph = {module: _imports(module) for module in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            circle = [*path[path.index(module) :], module]
            raise AssertionError("import circle: " + " -> ".join(circle))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert "plugin" in done
    assert graph["_volume"], "the import reader found nothing: it would prove nothing"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_reads_another_modules_private_names(module: str) -> None:
    own = _defined_private_names(module)
    reached: list[str] = []
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.ImportFrom):
            reached += [
                f"import {alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue  # a class's own (or inherited) members
        if name in own or (module, name) in ALLOWED_PRIVATE:
            continue
        reached.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert reached == []


def test_init_only_reexports() -> None:
    tree = _tree("__init__")
    body = [node for node in tree.body if not isinstance(node, (ast.ImportFrom, ast.Expr))]
    assert [type(node).__name__ for node in body] == ["Assign"]  # __all__
    exported = set(pytest_dockervol.__all__)
    imported = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
    }
    assert exported == imported


def test_tests_import_no_private_helper() -> None:
    """Tests use what the package offers, so they survive moving code between modules."""
    tests = Path(__file__).parent
    reached = [
        f"{path.name}:{node.lineno}: {alias.name} from {node.module}"
        for path in sorted(tests.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_dockervol")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert reached == []
