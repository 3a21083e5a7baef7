"""The documentation builds: docs/api.md is current, every Markdown link resolves, every public name is documented."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

# Public names that still lack a docstring; each needs an attribute docstring in its module. Remove a name
# from this set as soon as it is documented (the test below fails if an entry is no longer needed).
KNOWN_UNDOCUMENTED: frozenset[str] = frozenset()

_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def _load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nnseg_docs_build_api", DOCS / "build_api.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    return _load_builder()


def _strip_code(text: str) -> str:
    """Markdown without fenced code blocks and inline code spans (links inside code are not links)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else re.sub(r"`[^`]*`", "``", line))
    return "\n".join(lines)


def anchors_of(path: Path, slug: object) -> set[str]:
    """The anchors a Markdown file defines: GitHub slugs of its headings (duplicates get -1, -2...) and <a id>."""
    text = path.read_text(encoding="utf-8")
    found: set[str] = set(_HTML_ANCHOR.findall(text))
    counts: dict[str, int] = {}
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            base = slug(match.group(2))  # type: ignore[operator]
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(path: Path, slug: object) -> list[str]:
    """Every relative link of a Markdown file whose file or anchor does not exist, as 'file: target (why)'."""
    problems = []
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    for target in _LINK.findall(_strip_code(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            problems.append(f"{shown}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors_of(resolved, slug):
            problems.append(f"{shown}: {target} (no such anchor in {resolved.name})")
    return problems


def _markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def test_api_reference_is_up_to_date(builder: ModuleType) -> None:
    current = (DOCS / "api.md").read_text(encoding="utf-8")
    assert current == builder.render(), "docs/api.md is out of date: run `python docs/build_api.py` and commit it."


def test_markdown_links_resolve(builder: ModuleType) -> None:
    problems = [p for path in _markdown_files() for p in broken_links(path, builder.github_slug)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_link_checker_finds_missing_files_and_anchors(builder: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text('# A title\n## Same\n## Same\n<a id="custom"></a>\n')
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-title) [dup](other.md#same-1) [id](other.md#custom) [web](https://x.org/y#z)\n"
        "[gone](missing.md) [bad](other.md#nope) `[code](missing2.md)`\n```\n[fenced](missing3.md)\n```\n"
        "[self](#nothing-here)\n"
    )
    problems = broken_links(page, builder.github_slug)
    assert len(problems) == 3
    assert "missing.md (no such file)" in problems[0]
    assert "other.md#nope (no such anchor" in problems[1]
    assert "#nothing-here" in problems[2]


def test_github_slug_matches_githubs_rule(builder: ModuleType) -> None:
    assert builder.github_slug("`nnseg.dataset.RawDataset`") == "nnsegdatasetrawdataset"
    assert builder.github_slug("Coming from nnU-Net: the commands") == "coming-from-nnu-net-the-commands"
    assert builder.github_slug("`nnseg.__version__`") == "nnseg__version__"


def test_every_name_in_the_api_reference_imports() -> None:
    names = re.findall(r"^### `(nnseg(?:\.\w+)*)`$", (DOCS / "api.md").read_text(encoding="utf-8"), re.MULTILINE)
    assert len(names) > 50
    failures = []
    for qualname in names:
        module_name, _, attr = qualname.rpartition(".")
        try:
            getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            failures.append(f"{qualname}: {err}")
    assert not failures, "docs/api.md names that do not import:\n" + "\n".join(failures)


def test_every_public_name_has_a_docstring(builder: ModuleType) -> None:
    undocumented = {name for name, _kind, doc in builder.iter_public_objects() if not doc.strip()}
    missing = sorted(undocumented - KNOWN_UNDOCUMENTED)
    assert not missing, "public names without a docstring (add a Google-style docstring):\n" + "\n".join(missing)
    stale = sorted(KNOWN_UNDOCUMENTED - undocumented)
    assert not stale, f"documented now, remove from KNOWN_UNDOCUMENTED in tests/test_docs.py: {stale}"


def test_builder_documents_constants_from_their_attribute_docstring(builder: ModuleType) -> None:
    docs = {name: doc for name, _kind, doc in builder.iter_public_objects()}
    assert docs["nnseg.io.SUPPORTED_ENDINGS"] == "File endings nnseg reads and writes."
    assert builder.stable_repr(frozenset({"b", "a"})) == "frozenset({'a', 'b'})"
    assert " at 0x" not in builder.stable_repr(object())
