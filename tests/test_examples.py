"""The README's demo and the runnable examples work end to end (small sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nnseg.cli import main as cli

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_every_available_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", str(tmp_path), "--num-cases", "4", "--num-workers", "1", "--small"]) == 0
    out = capsys.readouterr().out
    assert "==> verify the dataset" in out
    plans_files = list((tmp_path / "work" / "plans").glob("*.json"))
    assert [p.name for p in plans_files] == ["nnUNetPlans.json"]
    assert "3d_fullres" in json.loads(plans_files[0].read_text())["configurations"]
    assert (tmp_path / "work" / "fingerprint.json").is_file()
    stores = list((tmp_path / "work" / "preprocessed").iterdir())
    assert len(stores) == 1
    assert stores[0].name.startswith("3d_fullres_")
    assert "4 cases in" in out


def test_demo_is_rerunnable_in_the_same_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["demo", str(tmp_path), "--num-cases", "4", "--num-workers", "1", "--small"]
    assert cli.main(args) == 0
    first = (tmp_path / "work" / "plans" / "nnUNetPlans.json").read_bytes()
    assert cli.main(args) == 0
    assert (tmp_path / "work" / "plans" / "nnUNetPlans.json").read_bytes() == first


def test_quickstart_example_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py"), str(tmp_path), "--smoke"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "3d_fullres" in result.stdout
    assert (tmp_path / "fingerprint.json").is_file()
