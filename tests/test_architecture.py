"""Architecture rules checked on the source tree with ``ast`` (no imports of the package needed).

The rules (DESIGN.md): no environment variables outside ``nnseg/cli/``, no ``assert`` for anything a user
can cause (a true invariant is marked ``# invariant`` on the same line), no ``print`` or direct writes to
stdout/stderr in library code, no pickles (no pickle libraries, ``weights_only=True`` on every
``torch.load``, never ``allow_pickle=True``), no ``import *``, modules of at most 400 lines, imports that
never climb a layer (``LAYERS``) and no import cycles (``KNOWN_CYCLES_TO_REMOVE`` lists the ones being removed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nnseg"
MAX_MODULE_LINES = 400
SOURCES = sorted(PACKAGE.rglob("*.py"))
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def _in_cli(path: Path) -> bool:
    return path.is_relative_to(PACKAGE) and path.relative_to(PACKAGE).parts[:1] == ("cli",)


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _os_aliases(tree: ast.Module) -> set[str]:
    """Names under which a module refers to ``os`` (``import os``, ``import os as _os``)."""
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "os"
    }


def _is_call_to(node: ast.AST, owner: str, attr: str) -> bool:
    """Whether ``node`` is a call ``<owner>.<attr>(...)`` or ``<something>.<owner>.<attr>(...)``."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute) or node.func.attr != attr:
        return False
    value = node.func.value
    return (isinstance(value, ast.Name) and value.id == owner) or (
        isinstance(value, ast.Attribute) and value.attr == owner
    )


def _constant_keyword(node: ast.Call, name: str) -> object:
    return next((k.value.value for k in node.keywords if k.arg == name and isinstance(k.value, ast.Constant)), None)


def _violations(path: Path, *, in_cli: bool | None = None, label: str | None = None) -> list[str]:
    """Return every house-rule violation in one module.

    Args:
        path: The module.
        in_cli: Whether the module counts as part of ``nnseg/cli/`` (default: from its location).
        label: How to name the module in messages (default: its path relative to the repository).
    """
    in_cli = _in_cli(path) if in_cli is None else in_cli
    label = _rel(path) if label is None else label
    source_lines = path.read_text().splitlines()
    tree = _parse(path)
    os_names = _os_aliases(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        where = f"{label}:{getattr(node, 'lineno', 0)}"
        if not in_cli:
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ENV_NAMES
                and isinstance(node.value, ast.Name)
                and node.value.id in os_names
            ):
                found.append(f"{where} reads or writes environment variables outside nnseg/cli/")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(a.name in ENV_NAMES for a in node.names)
            ):
                found.append(f"{where} imports os.environ/getenv outside nnseg/cli/")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{where} calls print() in library code (use logging)")
            if _is_call_to(node, "stdout", "write") or _is_call_to(node, "stderr", "write"):
                found.append(f"{where} writes to sys.stdout/sys.stderr in library code (use logging)")
        if isinstance(node, ast.Assert) and "# invariant" not in source_lines[node.lineno - 1]:
            found.append(f"{where} uses assert (raise an NnsegError; mark true invariants '# invariant')")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(n and n.split(".")[0] in PICKLE_MODULES for n in names):
                found.append(f"{where} imports a pickle library (no pickles on disk)")
            if any(n and n.split(".")[0] in {"timm", "torchvision"} for n in names):
                found.append(f"{where} imports timm/torchvision (they break beside the CPU torch build)")
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                found.append(f"{where} uses import *")
        if isinstance(node, ast.Call):
            if _constant_keyword(node, "weights_only") is False:
                found.append(f"{where} loads with weights_only=False (unpickles arbitrary code)")
            elif _is_call_to(node, "torch", "load") and _constant_keyword(node, "weights_only") is not True:
                found.append(f"{where} calls torch.load without weights_only=True (unpickles arbitrary code)")
            if _constant_keyword(node, "allow_pickle") is True:
                found.append(f"{where} passes allow_pickle=True (no pickles on disk)")
    if len(source_lines) > MAX_MODULE_LINES:
        found.append(f"{label} has {len(source_lines)} lines (limit {MAX_MODULE_LINES}); split it")
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


BAD_MODULE = """\
import os
import os as _os
import pickle
import sys
from os import environ, getenv
from numpy import *
x = os.environ['A']
y = _os.getenv('B')
assert x
assert y  # invariant: y is set above
print(x)
sys.stderr.write(x)
torch_load(weights_only=False)
torch.load('w.pt')
numpy.load('a.npy', allow_pickle=True)
"""


def test_checker_catches_each_rule(tmp_path: Path) -> None:
    """The checker itself must be able to fail: feed it a module that breaks every rule."""
    bad = tmp_path / "probe.py"
    bad.write_text(BAD_MODULE + "\n" * MAX_MODULE_LINES)
    found = _violations(bad, in_cli=False, label="probe.py")
    assert sorted(found) == sorted(
        [
            "probe.py:3 imports a pickle library (no pickles on disk)",
            "probe.py:5 imports os.environ/getenv outside nnseg/cli/",
            "probe.py:6 uses import *",
            "probe.py:7 reads or writes environment variables outside nnseg/cli/",
            "probe.py:8 reads or writes environment variables outside nnseg/cli/",
            "probe.py:9 uses assert (raise an NnsegError; mark true invariants '# invariant')",
            "probe.py:11 calls print() in library code (use logging)",
            "probe.py:12 writes to sys.stdout/sys.stderr in library code (use logging)",
            "probe.py:13 loads with weights_only=False (unpickles arbitrary code)",
            "probe.py:14 calls torch.load without weights_only=True (unpickles arbitrary code)",
            "probe.py:15 passes allow_pickle=True (no pickles on disk)",
            f"probe.py has {BAD_MODULE.count(chr(10)) + MAX_MODULE_LINES} lines (limit {MAX_MODULE_LINES}); split it",
        ]
    )


def test_cli_may_read_the_environment_and_print(tmp_path: Path) -> None:
    cli_module = tmp_path / "cli_probe.py"
    cli_module.write_text("import os\nimport sys\nprint(os.environ.get('A'))\nsys.stdout.write('x')\n")
    assert _violations(cli_module, in_cli=True, label="cli_probe.py") == []
    assert len(_violations(cli_module, in_cli=False, label="cli_probe.py")) == 3


def test_clean_module_passes(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text("import torch\nstate = torch.load('w.pt', weights_only=True)\nassert state  # invariant\n")
    assert _violations(good, in_cli=False, label="good.py") == []


# ------------------------------------------------------------------------------------------ layers and cycles
# The import layers (DESIGN.md: values flow RawDataset -> Fingerprint -> Plans -> PreprocessedStore ->
# checkpoints -> predictions -> EvaluationSummary). A module may import its own layer and the layers below,
# never one above. The trainer sits above inference and evaluation because its final validation predicts
# the fold with the sliding window and evaluates it; nothing in inference or evaluation needs training.
# `testing` (synthetic data) stands beside the library: it may import any library layer, and only the
# CLI and the package root may import it. Runtime imports count wherever they are (module level, inside
# functions, importlib.import_module("nnseg...")); imports under `if TYPE_CHECKING:` do not.
BASE_LAYER = ("errors", "_checks", "_hashing", "_atomic", "_jsonfile", "_suggest", "_version", "_deprecation",
              "_cropping", "_geometry", "_image_formats", "_integrity", "_lock", "_stop", "_train_state", "io",
              "sharding", "network", "losses",
              "checkpoint", "model_zip", "workspace")  # fmt: skip
LAYERS: tuple[tuple[str, ...], ...] = (
    BASE_LAYER,
    ("dataset",),
    ("fingerprint",),
    ("planning",),
    ("preprocessing",),
    ("evaluation",),
    ("postprocessing",),
    ("inference",),
    ("training",),
    ("selection",),
    ("presentation",),
    ("testing",),
    ("_verify_work",),
    ("cli", "__init__", "__main__"),
)

# Module cycles being removed (none left). Each entry is the sorted pair of modules of one cycle (a longer
# cycle is listed by its first two modules).
KNOWN_CYCLES_TO_REMOVE: set[tuple[str, str]] = set()


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _runtime_imports(tree: ast.Module, own: str, is_package: bool, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``own`` imports at runtime (``TYPE_CHECKING`` blocks skipped).

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``.
    """
    found: set[str] = set()
    base = own if is_package else own.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                module = f"{anchor}.{module}".rstrip(".")
            found.update(f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names)
        elif (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):  # fmt: skip
            found.add(node.args[0].value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found & known


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports at runtime (names resolved to existing modules)."""
    paths = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        graph[name] = _runtime_imports(_parse(path), name, path.name == "__init__.py", set(paths)) - {name}
    return graph


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(module: str) -> int:
    unit = _unit(module)
    for rank, layer in enumerate(LAYERS):
        if unit in layer:
            return rank
    raise AssertionError(f"{module}: its subpackage or module {unit!r} has no layer; add it to LAYERS")


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """``"a imports b (layer x above layer y)"`` for every import that climbs up a layer."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if _unit(target) == "testing" and _unit(module) != "testing":
                if _rank(module) < len(LAYERS) - 1:
                    found.append(f"{module} imports {target} (only the CLI may use nnseg.testing)")
            elif _rank(target) > _rank(module):
                found.append(f"{module} imports {target} ({_unit(target)} is a layer above {_unit(module)})")
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[tuple[str, ...]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(tuple(sorted(group)))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(groups)


def test_no_import_climbs_a_layer() -> None:
    assert layer_violations(import_graph(PACKAGE)) == []


def test_no_import_cycles_beyond_the_known_ones() -> None:
    cycles = import_cycles(import_graph(PACKAGE))
    assert [c for c in cycles if c[:2] not in KNOWN_CYCLES_TO_REMOVE] == []
    stale = KNOWN_CYCLES_TO_REMOVE - {c[:2] for c in cycles}
    assert not stale, f"these cycles are gone: remove them from KNOWN_CYCLES_TO_REMOVE: {sorted(stale)}"


def test_layer_checker_finds_climbs_cycles_and_ignores_type_checking(tmp_path: Path) -> None:
    root = tmp_path / "nnseg"
    files = {
        "__init__.py": "",
        "errors.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nnseg.dataset import Case\n",
        "dataset/__init__.py": "from nnseg.dataset._a import A\n",
        "dataset/_a.py": "from nnseg import errors\nA = 1\ndef f():\n    from nnseg.dataset._b import B\n",
        "dataset/_b.py": "from . import _a\nB = 2\n",
        "planning/__init__.py": "import importlib\ndef g():\n    return importlib.import_module('nnseg.training')\n",
        "training/__init__.py": "from nnseg.testing import make\n",
        "testing/__init__.py": "from nnseg.dataset import A\nmake = A\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    graph = import_graph(root)
    assert graph["nnseg.errors"] == set()  # TYPE_CHECKING only
    assert layer_violations(graph) == [
        "nnseg.planning imports nnseg.training (training is a layer above planning)",
        "nnseg.training imports nnseg.testing (only the CLI may use nnseg.testing)",
    ]
    assert import_cycles(graph) == [("nnseg.dataset._a", "nnseg.dataset._b")]


# ------------------------------------------------------------------------------------------ sizes
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 250
MAX_TRAINER_LINES = 300
# definitions being split by work in progress (none left)
KNOWN_OVERSIZED: set[str] = set()


def oversized_definitions(path: Path, label: str) -> list[str]:
    """``"label:name has N lines (limit L)"`` for every function over 60 lines and class over 250 (Trainer 300).

    Lines are counted from the ``def``/``class`` line to its last line, docstring included.
    """
    found = []
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if isinstance(node, ast.ClassDef):
                limit = MAX_TRAINER_LINES if node.name == "Trainer" else MAX_CLASS_LINES
            else:
                limit = MAX_FUNCTION_LINES
            if lines > limit:
                found.append(f"{label}:{node.name} has {lines} lines (limit {limit})")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_functions_and_classes_are_small(path: Path) -> None:
    found = [f for f in oversized_definitions(path, _rel(path)) if f.split(" has ")[0] not in KNOWN_OVERSIZED]
    assert found == [], "split these by responsibility"


def test_known_oversized_definitions_are_still_oversized() -> None:
    current = {f.split(" has ")[0] for path in SOURCES for f in oversized_definitions(path, _rel(path))}
    stale = KNOWN_OVERSIZED - current
    assert not stale, f"these are small now: remove them from KNOWN_OVERSIZED: {sorted(stale)}"


def test_oversized_definitions_are_found(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def long():\n" + "    x = 1\n" * 60 + "\n\nclass Trainer:\n" + "    y = 1\n" * 280 + "\n")
    assert oversized_definitions(probe, "probe.py") == ["probe.py:long has 61 lines (limit 60)"]
