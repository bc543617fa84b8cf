"""The package's shape, checked from its source (CONTRIBUTING.md, "Architecture"): the
pytest layer at the root, named subpackages that import only the ones below them, no
import circle, the docker SDK behind ``_engine``, error families on builtin bases."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import pytest_dockervol

PACKAGE = Path(pytest_dockervol.__file__).parent
#: Dotted module name (``_volumes.docker``; ``plugin`` at the root) -> its file.
MODULES = {
    ".".join(path.relative_to(PACKAGE).with_suffix("").parts): path
    for path in sorted(PACKAGE.rglob("*.py"))
}
#: The root: the pytest layer and the ground everything stands on.
PYTEST_LAYER = {"__init__", "__main__", "plugin", "fixtures", "_factory", "_state"}
GROUND = {"_errors", "_options"}
#: Each group, and the groups it may import (its own modules always).
MAY_IMPORT: dict[str, set[str]] = {
    "ground": set(),
    "_engine": {"ground"},
    "_seeding": {"ground"},
    "_volumes": {"ground", "_engine", "_seeding"},
    "_cache": {"ground", "_engine", "_seeding", "_volumes"},
    "_runs": {"ground", "_engine", "_seeding", "_volumes", "_cache"},
    "pytest": {"ground", "_engine", "_seeding", "_volumes", "_cache", "_runs"},
}
#: Only ``_engine`` talks to these: the SDK and the HTTP stack under it.
SDK_PACKAGES = {"docker", "requests", "urllib3", "paramiko"}
#: The docker SDK's private request helpers, used in one place on purpose (see its docstring).
ALLOWED_PRIVATE = {
    ("_engine.engine", name) for name in ("_url", "_get", "_raise_for_status", "_stream_raw_result")
}


def group_of(module: str) -> str:
    if module in GROUND:
        return "ground"
    if module in PYTEST_LAYER:
        return "pytest"
    return module.split(".")[0]


def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The package's modules an import names, wherever it stands (type-only too)."""
    if node.level == 0:
        if not (node.module or "").startswith("pytest_dockervol."):
            return []
        base = (node.module or "").split(".", 1)[1]
    else:
        package = module.split(".")[:-1]
        if MODULES[module].name == "__init__.py":
            package = module.split(".")[:-1] if module != "__init__" else []
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    found = [f"{base}.{alias.name}".lstrip(".") for alias in node.names]
    found = [name for name in found if name in MODULES]
    return found or ([base] if base in MODULES else [f"{base}.__init__"])


def imports_of(module: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.ImportFrom):
            found.update(name for name in _resolve(module, node) if name in MODULES)
    return found - {module}


def _external_imports(module: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_import_reader_sees_the_edges() -> None:
    """Guards the checks below: a reader that found nothing would prove nothing."""
    assert "_volumes.base" in imports_of("_volumes.docker")
    assert "_errors" in imports_of("_engine.engine")
    assert "_engine.engine" in imports_of("_volumes.helper")
    assert "_runs.watchdog" in imports_of("plugin")


def test_the_root_holds_only_the_pytest_layer() -> None:
    root = {module for module in MODULES if "." not in module}
    assert root <= PYTEST_LAYER | GROUND, f"move into a subpackage: {root - PYTEST_LAYER - GROUND}"
    assert len(root - {"__init__", "__main__"}) <= 6
    packages = {module.split(".")[0] for module in MODULES if "." in module}
    assert packages == set(MAY_IMPORT) - {"ground", "pytest"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_only_its_own_group_or_those_below(module: str) -> None:
    group = group_of(module)
    allowed = MAY_IMPORT[group] | {group}
    wrong = sorted(m for m in imports_of(module) if group_of(m) not in allowed)
    assert wrong == [], f"{group} may import only {sorted(allowed)}"


def test_no_import_circle() -> None:
    graph = {module: imports_of(module) for module in MODULES}
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


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_engine_package_talks_to_the_sdk(module: str) -> None:
    if group_of(module) == "_engine":
        return
    assert _external_imports(module) & SDK_PACKAGES == set()
    low_level = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(_tree(module))
        if isinstance(node, ast.Attribute) and node.attr == "api"
    ]
    assert low_level == [], "ask Engine instead of its low-level client"


def _defined_private_names(module: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


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


@pytest.mark.parametrize("package", sorted(set(MAY_IMPORT) - {"ground", "pytest"}))
def test_a_subpackage_init_only_says_what_it_is(package: str) -> None:
    """Modules import each other by their own names: an ``__init__`` that re-exported
    would import the whole package for any one module, and hide real edges."""
    tree = _tree(f"{package}.__init__")
    assert [type(node).__name__ for node in tree.body] == ["Expr"]
    assert ast.get_docstring(tree)


def _exported_errors() -> list[type[BaseException]]:
    return [
        value
        for value in vars(pytest_dockervol).values()
        if inspect.isclass(value)
        and issubclass(value, pytest_dockervol.DockervolError)
        and value.__name__ in pytest_dockervol.__all__
    ]


def test_errors_form_at_most_six_families_on_builtin_bases() -> None:
    root = pytest_dockervol.DockervolError
    families = {
        next(k for k in error.__mro__ if k.__bases__[0] is root or root in k.__bases__)
        for error in _exported_errors()
        if error is not root
    }
    assert 2 <= len(families) <= 6, sorted(f.__name__ for f in families)
    for family in families:
        builtin = [
            base
            for base in family.__mro__
            if base.__module__ == "builtins" and base not in (Exception, BaseException, object)
        ]
        assert builtin, f"{family.__name__} has no builtin base (ValueError, RuntimeError...)"
    leaves = [error for error in _exported_errors() if error is not root]
    assert all(any(issubclass(e, f) for f in families) for e in leaves)


def test_tests_import_no_private_name() -> None:
    """Tests may import a private module (a unit test the module it tests; an engine test
    the labels, state directory and lease it checks), never a ``_private`` name in it:
    those are the module's own, and free to change."""
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
