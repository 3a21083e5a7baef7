"""The presentation layer sits on top: the library never imports it, and only it draws (besides progress.png)."""

from __future__ import annotations

import ast
from pathlib import Path

import nnseg

PACKAGE = Path(nnseg.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_cli_imports_the_presentation_layer() -> None:
    offenders = [
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
        if path.parent.name not in ("presentation", "cli")
        and any(name.startswith("nnseg.presentation") for name in _imports(path))
    ]  # fmt: skip
    assert offenders == []


def test_only_the_presentation_layer_and_the_progress_plot_import_matplotlib() -> None:
    users = {
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
        if any(name.split(".")[0] == "matplotlib" for name in _imports(path))
    }  # fmt: skip
    assert {u for u in users if not u.startswith("presentation/")} == {"training/_callbacks.py"}
