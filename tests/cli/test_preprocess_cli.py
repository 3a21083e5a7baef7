"""``nnseg preprocess WORK -c CONFIG``: run, status, parts, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnseg.cli import main as cli
from nnseg.dataset import RawDataset
from nnseg.fingerprint import Fingerprint, IntensityStats
from nnseg.planning import Planner
from nnseg.preprocessing import PreprocessedStore, store_name
from nnseg.testing import make_synthetic_dataset
from nnseg.workspace import Workspace

STATS = IntensityStats(mean=100.0, median=100.0, std=50.0, min=0.0, max=300.0, percentile_99_5=250.0,
                       percentile_00_5=10.0)  # fmt: skip


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """nnseg/cli/main.py does not list the module yet (the lead adds it); register it for these tests."""
    if "nnseg.cli._preprocess" not in cli.SUBCOMMAND_MODULES:
        monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", (*cli.SUBCOMMAND_MODULES, "nnseg.cli._preprocess"))


def _work(tmp_path: Path) -> tuple[Path, Path]:
    """A work folder for a 4-case synthetic dataset with plans/nnUNetPlans.json; returns (work, store dir)."""
    raw = make_synthetic_dataset(tmp_path / "raw", num_cases=4, shape=(16, 24, 24))
    dataset = RawDataset.from_folder(raw)
    work = tmp_path / "work"
    Workspace(work).initialise(raw)
    fingerprint = Fingerprint(((1.0,) * 3,) * 4, ((16, 24, 24),) * 4, (STATS,), 1.0)
    plans = Planner().plan(fingerprint, dataset.spec)
    plans.save(Workspace(work).plans_path("nnUNetPlans"))
    return work, work / "preprocessed" / store_name(plans["3d_fullres"], dataset.spec)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err


def test_status_parts_and_full_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work, store_dir = _work(tmp_path)
    assert cli.main(["preprocess", str(work), "-c", "3d_fullres", "--status"]) == 1
    assert "0 done, 4 missing, 0 stale of 4 case(s)" in capsys.readouterr().out
    assert not store_dir.exists()  # --status changes nothing
    assert cli.main(["preprocess", str(work), "-c", "3d_fullres", "--num-parts", "2", "--part-id", "1"]) == 0
    assert "part 1 of 2 done" in capsys.readouterr().out
    assert PreprocessedStore(store_dir).status().done == ("case_001", "case_003")
    assert cli.main(["preprocess", str(work), "-c", "3d_fullres", "--status"]) == 1
    out = capsys.readouterr().out
    assert "2 done, 2 missing, 0 stale of 4 case(s)" in out
    assert "missing: case_000, case_002" in out
    assert cli.main(["preprocess", str(work), "-c", "3d_fullres", "--num-workers", "1"]) == 0
    assert f"4 case(s) of '3d_fullres' complete in {store_dir}" in capsys.readouterr().out
    assert cli.main(["preprocess", str(work), "-c", "3d_fullres", "--status"]) == 0


def test_failed_case_exits_1_and_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work, store_dir = _work(tmp_path)
    next((tmp_path / "raw").rglob("case_002_0000.nii.gz")).write_bytes(b"garbage")
    assert cli.main(["preprocess", str(work), "-c", "3d_fullres"]) == 1
    err = capsys.readouterr().err
    assert "preprocessing failed for 1 of 4 case(s)" in err
    assert "  - case_002: ImageIOError" in err
    assert PreprocessedStore(store_dir).status().done == ("case_000", "case_001", "case_003")


def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["preprocess", str(tmp_path / "nowhere"), "-c", "3d_fullres"]) == 2
    assert "nnseg preprocess: error: DatasetError: " in (err := _one_line_error(capsys))
    assert "is not an nnseg work folder" in err
    work, _ = _work(tmp_path)
    assert cli.main(["preprocess", str(work), "-c", "3d_fullres", "--plans", "Other"]) == 2
    assert "PlansError: plans file" in _one_line_error(capsys)
    assert cli.main(["preprocess", str(work), "-c", "3d_lowres"]) == 2
    assert "3d_lowres" in _one_line_error(capsys)
    assert cli.main(["preprocess", str(work), "-c", "3d_fullres", "--num-parts", "2", "--part-id", "2"]) == 2
    assert "ConfigError: Shard: index must be an integer in [0, 1]; got 2" in _one_line_error(capsys)
    assert cli.main(["preprocess", str(work), "-c", "3d_fullres", "--num-workers", "0"]) == 2
    assert (
        "nnseg preprocess: --num-workers must be an integer >= 1; got 0. Set --num-workers=1 or more."
        in _one_line_error(capsys)
    )
