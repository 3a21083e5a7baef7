"""The benchmark runner keeps the hand-written sections of a report; every benchmark's --quick mode runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", REPO / "benchmarks" / "run_all.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module
    spec.loader.exec_module(module)
    return module


def test_hand_written_sections_survive_a_rewrite(tmp_path: Path) -> None:
    run_all = _run_all()
    report = tmp_path / "benchmarks.md"
    assert run_all.hand_written_part(report) == ""
    report.write_text(f"# old table\n\n{run_all.HAND_WRITTEN_MARKER} ... -->\n\n## Where the time goes\nprofile\n")
    kept = run_all.hand_written_part(report)
    assert kept.startswith(f"\n{run_all.HAND_WRITTEN_MARKER}")
    assert "## Where the time goes\nprofile" in kept
    assert "old table" not in kept


@pytest.mark.slow
def test_every_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--quick", "--no-nnunet", "--results-dir",
         str(tmp_path)],
        capture_output=True, text=True, timeout=1500, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted(p.stem for p in tmp_path.glob("*.json"))
    expected = sorted(p.stem.removeprefix("bench_") for p in (REPO / "benchmarks").glob("bench_*.py"))
    assert written == expected
    for path in tmp_path.glob("*.json"):
        json.loads(path.read_text())
    assert (tmp_path / "REPORT.md").read_text().startswith("# Benchmark report")
