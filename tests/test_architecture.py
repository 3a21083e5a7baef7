"""Architecture rules checked on the source tree with ``ast`` (no imports of the package needed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nnseg"
MAX_MODULE_LINES = 600
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def _in_cli(path: Path) -> bool:
    return "cli" in path.relative_to(PACKAGE).parts[:1]


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _violations(path: Path) -> list[str]:
    """Return every house-rule violation in one module."""
    source_lines = path.read_text().splitlines()
    found: list[str] = []
    for node in ast.walk(_parse(path)):
        where = f"{_rel(path)}:{getattr(node, 'lineno', 0)}"
        if (
            isinstance(node, ast.Attribute)
            and node.attr in {"environ", "getenv", "putenv", "unsetenv"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and not _in_cli(path)
        ):
            found.append(f"{where} reads or writes environment variables outside nnseg/cli/")
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and not _in_cli(path)
            and any(alias.name in {"environ", "getenv", "putenv"} for alias in node.names)
        ):
            found.append(f"{where} imports os.environ/getenv outside nnseg/cli/")
        if isinstance(node, ast.Assert) and "# invariant" not in source_lines[node.lineno - 1]:
            found.append(f"{where} uses assert (raise an NnsegError; mark true invariants '# invariant')")
        is_print = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
        if is_print and not _in_cli(path):
            found.append(f"{where} calls print() in library code (use logging)")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(n and n.split(".")[0] in {"pickle", "dill", "cloudpickle", "joblib"} for n in names):
                found.append(f"{where} imports a pickle library (no pickles on disk)")
            if any(n and n.split(".")[0] in {"timm", "torchvision"} for n in names):
                found.append(f"{where} imports timm/torchvision (they break beside the CPU torch build)")
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                found.append(f"{where} uses import *")
        if (
            isinstance(node, ast.keyword)
            and node.arg == "weights_only"
            and isinstance(node.value, ast.Constant)
            and node.value.value is False
        ):
            found.append(f"{where} loads with weights_only=False (unpickles arbitrary code)")
    if len(source_lines) > MAX_MODULE_LINES:
        found.append(f"{_rel(path)} has {len(source_lines)} lines (limit {MAX_MODULE_LINES}); split it")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_module_follows_house_rules(path: Path) -> None:
    assert _violations(path) == []


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_public_names_have_docstrings(path: Path) -> None:
    module = _parse(path)
    missing = []
    if ast.get_docstring(module) is None:
        missing.append("<module>")
    for node in module.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            is_overload = any(isinstance(d, ast.Name) and d.id == "overload" for d in node.decorator_list)
            if ast.get_docstring(node) is None and not is_overload:
                missing.append(node.name)
            if isinstance(node, ast.ClassDef):
                missing += [
                    f"{node.name}.{item.name}"
                    for item in node.body
                    if isinstance(item, ast.FunctionDef)
                    and not item.name.startswith("_")
                    and ast.get_docstring(item) is None
                    and not any(isinstance(d, ast.Name) and d.id == "overload" for d in item.decorator_list)
                ]
    assert missing == [], f"{_rel(path)}: public names without a docstring"


def test_checker_catches_each_rule(tmp_path: Path) -> None:
    """The checker itself must be able to fail: feed it a module that breaks every rule."""
    bad = PACKAGE / "_architecture_probe_tmp.py"
    bad.write_text(
        "import os\nimport pickle\nfrom os import environ\n"
        "x = os.environ['A']\nassert x\nprint(x)\ntorch_load(weights_only=False)\n"
    )
    try:
        messages = "\n".join(_violations(bad))
    finally:
        bad.unlink()
    for needle in ("environment", "assert", "print()", "pickle", "weights_only"):
        assert needle in messages
