"""Generate docs/api.md, the API reference, from the public names' docstrings and signatures.

Usage::

    python docs/build_api.py            # rewrite docs/api.md
    python docs/build_api.py --check    # exit 1 (and say so) when docs/api.md is out of date

The public API is ``nnseg.__all__`` plus the ``__all__`` of every public subpackage listed in
:data:`PUBLIC_MODULES` (a subpackage that does not exist yet is skipped). Every public name gets a heading
(its anchor is GitHub's slug of the heading, e.g. ``#nnsegdatasetrawdataset``), its signature and its
docstring; a class also lists its public methods and properties. A name that ``nnseg`` re-exports from a
subpackage is documented once, under the subpackage, and linked from the ``nnseg`` section.

The output depends only on the source (no memory addresses, sets sorted). Needs only the project's venv.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
API_MD = REPO / "docs" / "api.md"

PUBLIC_MODULES = (
    "nnseg.dataset",
    "nnseg.fingerprint",
    "nnseg.planning",
    "nnseg.preprocessing",
    "nnseg.training",
    "nnseg.inference",
    "nnseg.evaluation",
    "nnseg.presentation",
    "nnseg.checkpoint",
    "nnseg.io",
    "nnseg.sharding",
    "nnseg.network",
    "nnseg.errors",
    "nnseg.testing",
    "nnseg.workspace",
)
"""Public subpackages and modules, in the order of the reference (``nnseg`` itself comes first)."""

_SPECIAL_DOCS = {"__version__": 'The version of the installed nnseg package (a string such as ``"0.1.0"``).'}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@dataclass(frozen=True)
class Entry:
    """One documented public name: the module listing it, its name, the object, its kind and docstring.

    ``kind`` is ``class``, ``exception``, ``function`` or ``constant``; ``doc`` is empty when there is none.
    """

    module: str
    name: str
    obj: Any
    kind: str
    doc: str

    @property
    def qualname(self) -> str:
        """``module.name``: the heading and the import path."""
        return f"{self.module}.{self.name}"


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def import_public_modules() -> dict[str, ModuleType]:
    """``nnseg`` and every public subpackage that exists, by name (missing subpackages are skipped)."""
    modules = {"nnseg": importlib.import_module("nnseg")}
    for name in PUBLIC_MODULES:
        try:
            modules[name] = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):  # the subpackage itself is missing
                continue
            raise
    return modules


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "function"
    return "constant"


def constant_doc(module: ModuleType, name: str) -> str:
    """The attribute docstring of a module-level constant: the string right after its assignment.

    Follows ``from X import name`` in a package ``__init__`` to the module that assigns it.
    """
    source_module: ModuleType | None = module
    for _ in range(4):  # re-exports are at most a few levels deep
        if source_module is None:
            return ""
        try:
            tree = ast.parse(inspect.getsource(source_module))
        except (OSError, TypeError):
            return ""
        doc, origin = _assigned_doc(tree, name)
        if doc is not None:
            return inspect.cleandoc(doc)
        source_module = importlib.import_module(origin) if origin else None
    return ""


def _assigned_doc(tree: ast.Module, name: str) -> tuple[str | None, str | None]:
    """(docstring after ``name = ...`` in ``tree``, or None; the module ``name`` is imported from, or None)."""
    body = tree.body
    for i, node in enumerate(body):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            after = body[i + 1] if i + 1 < len(body) else None
            if (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                return after.value.value, None
            return "", None
        if isinstance(node, ast.ImportFrom) and node.module and any((a.asname or a.name) == name for a in node.names):
            return None, node.module
    return "", None


def collect_entries(modules: dict[str, ModuleType]) -> list[Entry]:
    """Every public name of every module, subpackages first, in ``__all__`` order."""
    entries = []
    for module_name, module in modules.items():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            kind = _kind(obj)
            if name in _SPECIAL_DOCS:
                doc = _SPECIAL_DOCS[name]
            elif kind == "constant":
                doc = constant_doc(module, name)
            else:
                doc = inspect.getdoc(obj) or ""
            entries.append(Entry(module_name, name, obj, kind, doc))
    return entries


def stable_repr(value: Any) -> str:
    """``repr`` without memory addresses and with sets sorted, so the output does not vary between runs."""
    if isinstance(value, frozenset | set):
        inner = ", ".join(sorted(stable_repr(v) for v in value))
        return f"{type(value).__name__}({{{inner}}})" if value else f"{type(value).__name__}()"
    if inspect.isclass(value) or inspect.isfunction(value):
        return f"{value.__module__}.{value.__qualname__}"
    return _ADDRESS.sub("", repr(value))


def signature_text(name: str, obj: Any) -> str | None:
    """``name(param: annotation = default, ...) -> return`` or None when there is no signature."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    parts = []
    seen_keyword_only = False
    for param in sig.parameters.values():
        if param.kind is param.KEYWORD_ONLY and not seen_keyword_only:
            parts.append("*")
            seen_keyword_only = True
        prefix = "*" if param.kind is param.VAR_POSITIONAL else "**" if param.kind is param.VAR_KEYWORD else ""
        seen_keyword_only = seen_keyword_only or param.kind is param.VAR_POSITIONAL
        text = prefix + param.name
        if param.annotation is not param.empty:
            text += f": {_annotation(param.annotation)}"
        if param.default is not param.empty:
            text += f" = {stable_repr(param.default)}"
        parts.append(text)
        if (
            param.kind is param.POSITIONAL_ONLY
            and [q for q in sig.parameters.values() if q.kind is q.POSITIONAL_ONLY][-1] is param
        ):
            parts.append("/")
    result = f"{name}({', '.join(parts)})"
    if sig.return_annotation is not sig.empty and not inspect.isclass(obj):
        result += f" -> {_annotation(sig.return_annotation)}"
    return result


def _annotation(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    return _ADDRESS.sub("", inspect.formatannotation(annotation))


def class_members(cls: type) -> Iterator[tuple[str, str, Any]]:
    """(name, kind, object) of the public methods and properties a class defines (or inherits from nnseg)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("nnseg"):
            continue
        for name, raw in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(raw, property):
                yield name, "property", raw
            elif isinstance(raw, classmethod | staticmethod):
                yield name, type(raw).__name__, raw.__func__
            elif inspect.isfunction(raw):
                yield name, "method", raw


# ------------------------------------------------------------------------------------------------ rendering
def _render_entry(entry: Entry) -> list[str]:
    lines = [f"### `{entry.qualname}`", "", f"*{entry.kind}*", ""]
    if entry.kind == "constant":
        lines += ["```python", f"{entry.name} = {stable_repr(entry.obj)[:200]}", "```", ""]
    else:
        sig = signature_text(entry.name, entry.obj)
        if sig is not None:
            lines += ["```python", sig, "```", ""]
    lines += [_doc_block(entry.doc), ""]
    if inspect.isclass(entry.obj):
        lines += _render_members(entry.obj)
    return lines


def _render_members(cls: type) -> list[str]:
    lines = ["**Members**", ""]
    for name, kind, raw in sorted(class_members(cls), key=lambda m: m[0]):
        if kind == "property":
            head = f"- **`{name}`** *(property)*"
        else:
            sig = signature_text(name, raw) or name
            if kind == "method":  # drop "self"
                sig = re.sub(r"^(\w+)\(self(, )?", r"\1(", sig)
            elif kind == "classmethod":
                sig = re.sub(r"^(\w+)\(cls(, )?", r"\1(", sig)
            head = f"- **`{name}`** *({kind})*: `{sig}`"
        doc = inspect.getdoc(raw) or ""
        lines.append(head)
        if doc:
            lines += ["", "\n".join("  " + ln if ln else ln for ln in _doc_block(doc).splitlines()), ""]
    return lines + [""] if len(lines) > 2 else []


def _doc_block(doc: str) -> str:
    """A docstring as Markdown: examples as code, section headers in bold, the rest as it is."""
    if not doc:
        return "*(no docstring)*"
    out: list[str] = []
    in_code, indent = False, 0
    for line in doc.splitlines():
        is_prompt = line.lstrip().startswith((">>>", "..."))
        if is_prompt and not in_code:
            out += ["```python"]
            in_code, indent = True, len(line) - len(line.lstrip())
        elif in_code and not line.strip():
            out += ["```"]
            in_code = False
        if in_code:
            out.append(line[indent:] if line[:indent].isspace() else line.lstrip())
            continue
        if not in_code and re.fullmatch(
            r"(Args|Arguments|Returns|Yields|Raises|Example|Examples|Attributes|Note|Notes):", line
        ):
            out.append(f"**{line[:-1]}**")
            continue
        out.append(line)
    if in_code:
        out.append("```")
    return _escape_outside_code("\n".join(out))


def _escape_outside_code(text: str) -> str:
    """Keep reST-style ``literals`` and indented argument lists readable in Markdown."""
    result, in_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            result.append(line)
            continue
        if not in_code:
            line = line.replace("``", "`")
            line = re.sub(r":(?:class|func|meth|attr|data|mod|obj):`~?([^`]+)`", r"`\1`", line)
            if line.startswith("    "):  # an argument description: a list item, not a code block
                line = "  " + line.lstrip() if not line.startswith("        ") else "    " + line.lstrip()
        result.append(line)
    return "\n".join(_listify_args(result))


def _listify_args(lines: list[str]) -> list[str]:
    """Turn Google-style ``name: text`` lines under a bold section header into Markdown list items."""
    out, section = [], ""
    for line in lines:
        if line.startswith("**") and line.endswith("**"):
            section = line
            out += ["", line, ""]
            continue
        if (
            section in ("**Args**", "**Arguments**", "**Attributes**", "**Raises**")
            and line.startswith("  ")
            and not line.startswith("    ")
        ):
            match = re.match(r"^  (\*{0,2}[\w.]+)( \([^)]*\))?:\s?(.*)$", line)
            if match:
                out.append(f"- `{match.group(1)}`{match.group(2) or ''}: {match.group(3)}")
                continue
        if not line.strip():
            section = "" if not out or not out[-1].startswith("- ") else section
        out.append(line)
    return out


def render(modules: dict[str, ModuleType] | None = None) -> str:
    """The whole of docs/api.md as a string."""
    modules = modules if modules is not None else import_public_modules()
    entries = collect_entries(modules)
    home: dict[int, Entry] = {}
    for entry in entries:  # a re-exported object is documented where a subpackage lists it
        if entry.module != "nnseg" and entry.kind != "constant":
            home.setdefault(id(entry.obj), entry)
    lines = _header(modules)
    for module_name, module in modules.items():
        lines += [f"## `{module_name}`", "", _doc_block(_first_paragraph(inspect.getdoc(module) or "")), ""]
        for entry in (e for e in entries if e.module == module_name):
            target = home.get(id(entry.obj))
            if entry.module == "nnseg" and target is not None:
                lines += [f"### `{entry.qualname}`", "",
                          f"The same object as [`{target.qualname}`](#{github_slug(f'`{target.qualname}`')}).", ""]  # fmt: skip
                continue
            lines += _render_entry(entry)
    return "\n".join(_squeeze_blank_lines(lines)).rstrip() + "\n"


def _header(modules: dict[str, ModuleType]) -> list[str]:
    lines = [
        "# API reference",
        "",
        "<!-- Generated by `python docs/build_api.py` from the docstrings; do not edit by hand. -->",
        "",
        "Every public name of nnseg: `nnseg.__all__` and the `__all__` of each public subpackage. The user guide",
        "([index.md](index.md)) shows how the pieces fit together; this page lists what each one takes and returns.",
        "",
    ]
    for module_name, module in modules.items():
        names = ", ".join(f"[`{n}`](#{github_slug(f'`{module_name}.{n}`')})" for n in getattr(module, "__all__", ()))
        lines.append(f"- [`{module_name}`](#{github_slug(f'`{module_name}`')}): {names}")
    return lines + [""]


def _first_paragraph(doc: str) -> str:
    """A module docstring up to its first example (examples of modules are in the user guide)."""
    kept = []
    for line in doc.splitlines():
        if line.strip() in ("Example:", "Examples:", "Layout::") or line.lstrip().startswith(">>>"):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def _squeeze_blank_lines(lines: list[str]) -> list[str]:
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).splitlines()


def iter_public_objects(modules: dict[str, ModuleType] | None = None) -> Iterator[tuple[str, str, str]]:
    """(qualified name, kind, docstring) of every public name and every public member of a public class.

    Used by the tests that require a docstring on every public name.
    """
    modules = modules if modules is not None else import_public_modules()
    for entry in collect_entries(modules):
        yield entry.qualname, entry.kind, entry.doc
        if inspect.isclass(entry.obj) and entry.obj.__module__.startswith("nnseg"):
            for name, kind, raw in class_members(entry.obj):
                yield f"{entry.qualname}.{name}", kind, (inspect.getdoc(raw) or "")


def main(argv: list[str] | None = None) -> int:
    """Write docs/api.md, or with ``--check`` compare it with what would be written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/api.md is out of date")
    parser.add_argument("--output", type=Path, default=API_MD, help="where to write (default docs/api.md)")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        if current != text:
            sys.stderr.write(f"{args.output} is out of date; run `python docs/build_api.py`.\n")
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {args.output}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
