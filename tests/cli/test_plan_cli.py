"""``nnseg plan WORK``: bad input, the table, the memory warning, and the real fingerprint -> plan chain."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import nnseg.planning
from nnseg.cli import main as cli
from nnseg.cli._plan import GB, format_plan_table, memory_warnings
from nnseg.dataset import DatasetSpec
from nnseg.fingerprint import Fingerprint, IntensityStats
from nnseg.planning import MemoryReport, Plans
from nnseg.workspace import Workspace

PLANS_FIXTURE = Path(__file__).parents[1] / "planning" / "data" / "nnUNetPlans.json"
SPEC = DatasetSpec(
    channel_names=("CT",), labels={"background": 0, "a": 1, "b": 2}, num_training=4, file_ending=".nii.gz"
)


def _plans(measured_gb: dict[str, float | None], *, gpu_memory_gb: float = 8.0) -> Plans:
    """The fixture plans with a memory report in 3d_fullres and 2d (measured or not)."""
    raw = json.loads(PLANS_FIXTURE.read_text())
    for name, value in measured_gb.items():
        measured = None if value is None else int(value * GB)
        report = MemoryReport(estimate=4.5e8, budget=5.6e8, gpu_memory_gb=gpu_memory_gb, measured_bytes=measured,
                              measured_device="meta", measurement_method="meta trace", note="n")  # fmt: skip
        raw["configurations"][name]["nnseg_memory_report"] = report.to_json()
    return Plans.from_json(raw)


def _work(tmp_path: Path) -> Path:
    """A work folder built by hand: workspace.json, dataset.json, fingerprint.json."""
    work, raw = tmp_path / "work", tmp_path / "raw"
    raw.mkdir()
    Workspace(work).initialise(raw)
    SPEC.save(work / "dataset.json")
    stats = IntensityStats(
        mean=50.0, median=50.0, std=10.0, min=0.0, max=100.0, percentile_99_5=95.0, percentile_00_5=5.0
    )
    Fingerprint(
        spacings=((2.5, 0.8, 0.8),) * 4,
        shapes_after_crop=((30, 100, 100), (32, 96, 104), (28, 100, 96), (30, 104, 100)),
        intensity_stats=(stats,),
        median_relative_size_after_cropping=1.0,
        case_ids=("c0", "c1", "c2", "c3"),
    ).save(work / "fingerprint.json")
    return work


# ------------------------------------------------------------------------------------------ bad input
def test_missing_fingerprint_says_to_run_nnseg_fingerprint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("nnseg plan: error: FingerprintError:")
    assert "fingerprint.json not found; run `nnseg fingerprint RAW_DIR -o" in err


def test_missing_dataset_json_says_to_run_nnseg_fingerprint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = _work(tmp_path)
    (work / "dataset.json").unlink()
    assert cli.main(["plan", str(work)]) == 2
    assert "dataset.json not found; run `nnseg fingerprint RAW_DIR -o" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-4"])
def test_non_positive_gpu_memory_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    assert cli.main(["plan", str(_work(tmp_path)), "--gpu-memory-gb", value]) == 2
    assert "nnseg plan: --gpu-memory-gb must be a number in (0, inf); got " in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../evil", "a/b", ""])
def test_a_plans_name_that_is_no_file_name_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    work = _work(tmp_path)
    assert cli.main(["plan", str(work), "--name", name, "--no-measure"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnseg plan: error: ConfigError: Planner: plans_name must be a file-name-safe name")
    assert f"got {name!r}" in err
    assert not (work / "plans").exists()
    assert not (tmp_path / "evil.json").exists()


def test_a_bad_measure_device_is_rejected_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = _work(tmp_path)
    assert cli.main(["plan", str(work), "--measure-device", "bogus"]) == 2
    assert capsys.readouterr().err.strip() == (
        "nnseg plan: error: ConfigError: measure_training_step_memory: device 'bogus' is not a torch device; "
        "use 'meta', 'cpu' or 'cuda:N'."
    )
    assert not (work / "plans").exists()


def test_unknown_planner_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["plan", str(tmp_path), "--planner", "resenc-s"])
    assert info.value.code == 2
    assert "invalid choice: 'resenc-s'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ the table
def test_table_has_one_row_per_configuration_and_the_measurement() -> None:
    table = format_plan_table(_plans({"3d_fullres": 4.71, "2d": None}))
    lines = table.splitlines()
    assert lines[0] == "plans 'nnUNetPlans' for 'Dataset003_Liver' (ExperimentPlanner)"
    assert lines[1].split() == [
        "configuration",
        "patch",
        "batch",
        "estimate",
        "budget",
        "target",
        "(GB)",
        "measured",
        "(GB)",
    ]
    rows = {line.split()[0]: line.split() for line in lines[3:7]}
    assert set(rows) == {"2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"}
    assert rows["3d_fullres"] == ["3d_fullres", "128x128x128", "2", "450.0M", "560.0M", "8", "4.71"]
    assert rows["2d"] == ["2d", "512x512", "12", "450.0M", "560.0M", "8", "-"]
    assert rows["3d_lowres"][3:] == ["-", "-", "-", "-"]
    assert rows["3d_cascade_fullres"][-1] == "4.71"  # inherits the report of 3d_fullres
    assert lines[-1].startswith("measured (meta trace, no GPU used): peak of one training step")
    assert "excludes cuDNN workspaces" in lines[-1]


def test_footnote_says_what_a_cuda_measurement_counts() -> None:
    raw = _plans({"3d_fullres": 4.0}).to_json()
    raw["configurations"]["3d_fullres"]["nnseg_memory_report"]["measurement_method"] = "torch.cuda.max_memory_allocated"
    lines = format_plan_table(Plans.from_json(raw)).splitlines()
    assert lines[-1].startswith("measured (torch.cuda.max_memory_allocated): peak allocated during one training step")
    assert "cuDNN workspaces); excludes allocator caching" in lines[-1]
    assert not any("no GPU used" in line for line in lines)


def test_no_footnote_without_a_measurement() -> None:
    lines = format_plan_table(_plans({"3d_fullres": None})).splitlines()
    assert lines[-1].startswith("estimate, budget: the planner's feature-map elements per sample")


def test_warning_only_when_measured_exceeds_the_target() -> None:
    assert memory_warnings(_plans({"3d_fullres": 7.9, "2d": None})) == []
    lines = memory_warnings(_plans({"3d_fullres": 9.25, "2d": 3.0}))
    assert [line.split()[1] for line in lines] == ["3d_fullres", "3d_cascade_fullres"]
    assert lines[0].startswith("WARNING: 3d_fullres measured 9.25 GB for one training step, more than the 8 GB target")


# ----------------------------------------------------------------------- the handler with a stand-in planner
@dataclasses.dataclass(frozen=True)
class _StandInPlanner:
    gpu_memory_gb: float = 8.0
    plans_name: str = "nnUNetPlans"

    def plan(self, fingerprint: Fingerprint, spec: DatasetSpec, *, dataset_name: str | None = None) -> Plans:
        raw = _plans({"3d_fullres": None, "2d": None}, gpu_memory_gb=self.gpu_memory_gb).to_json()
        raw["plans_name"] = self.plans_name
        raw["dataset_name"] = dataset_name
        return Plans.from_json(raw)


def test_handler_plans_measures_saves_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nnseg.planning, "ResEncLPlanner", _StandInPlanner, raising=False)
    work = _work(tmp_path)
    assert cli.main(["plan", str(work), "--planner", "resenc-l", "--gpu-memory-gb", "4", "--name", "Mine"]) == 0
    out = capsys.readouterr().out
    saved = Plans.load(work / "plans" / "Mine.json")
    assert saved.dataset_name == "raw"  # the raw dataset folder's name, as nnU-Net names plans
    report = saved["3d_fullres"].memory_report
    assert report is not None
    assert report.gpu_memory_gb == 4.0
    assert report.measured_bytes is not None
    assert report.measured_bytes > 4 * GB  # 128^3, batch 2 needs about 4.7 GB
    assert f"{report.measured_bytes / GB:.2f}" in out
    assert "WARNING: 3d_fullres measured" in out
    assert out.strip().endswith(f"wrote {work / 'plans' / 'Mine.json'}")
    assert not list((work / "plans").glob("*.tmp"))


def test_no_measure_leaves_the_measurement_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nnseg.planning, "Planner", _StandInPlanner, raising=False)
    work = _work(tmp_path)
    assert cli.main(["plan", str(work), "--no-measure"]) == 0
    report = Plans.load(work / "plans" / "nnUNetPlans.json")["3d_fullres"].memory_report
    assert report is not None
    assert report.measured_bytes is None
    assert "WARNING" not in capsys.readouterr().out


# ----------------------------------------------------------------------------------- the real planner
def test_non_standard_target_of_a_preset_is_one_warning_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = _work(tmp_path)
    assert cli.main(["plan", str(work), "--planner", "resenc-l", "--gpu-memory-gb", "12", "--no-measure"]) == 0
    err = capsys.readouterr().err.strip()
    assert err == (
        "nnseg plan: warning: nnUNetPlannerResEncL is tuned for gpu_memory_gb=24; planning for 12 GB scales its "
        "budget linearly. Ignore this if you chose it on purpose."
    )
    report = Plans.load(work / "plans" / "nnUNetResEncUNetLPlans.json")["3d_fullres"].memory_report
    assert report is not None
    assert report.budget == pytest.approx(2.1e9 / 2)


def test_a_target_so_small_that_no_patch_fits_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", str(_work(tmp_path)), "--gpu-memory-gb", "0.00001", "--no-measure"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnseg plan: error: PlanningError: no 2-D patch fits gpu_memory_gb=1e-05")
    assert "Use gpu_memory_gb >=" in err


def test_real_planner_on_a_hand_built_work_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = _work(tmp_path)
    assert cli.main(["plan", str(work), "--planner", "resenc-l"]) == 0
    out = capsys.readouterr().out
    plans = Plans.load(work / "plans" / "nnUNetResEncUNetLPlans.json")
    assert plans.experiment_planner_used == "nnUNetPlannerResEncL"
    for name in plans.configuration_names:
        report = plans[name].memory_report
        assert report is not None
        assert report.gpu_memory_gb == 24.0
        assert report.measured_bytes is not None
        assert 0 < report.measured_bytes < 24 * GB
        assert report.measured_device == "meta"
        assert f"{report.measured_bytes / GB:.2f}" in out
    assert "WARNING" not in out


def test_replanning_names_the_configurations_it_drops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = _work(tmp_path)
    assert cli.main(["plan", str(work), "--no-measure"]) == 0
    path = work / "plans" / "nnUNetPlans.json"
    custom = Plans.load(path).with_configurations({"3d_fullres_bs4": {"inherits_from": "3d_fullres", "batch_size": 4}})
    custom.save(path)
    capsys.readouterr()
    assert cli.main(["plan", str(work), "--no-measure"]) == 0
    err = capsys.readouterr().err.strip()
    assert err == (
        f"nnseg plan: warning: {path} is replaced; its configuration(s) ['3d_fullres_bs4'] are not in the new plans "
        "and are dropped (nnU-Net would keep them). Add them again with Plans.with_configurations, or plan under "
        "another --name to keep the old file."
    )
    assert "3d_fullres_bs4" not in Plans.load(path)
    assert cli.main(["plan", str(work), "--no-measure"]) == 0
    assert capsys.readouterr().err == ""  # nothing dropped this time


# ----------------------------------------------------------------------------------- the real chain
def test_synthetic_dataset_fingerprint_then_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nnseg.testing import make_synthetic_dataset

    raw = make_synthetic_dataset(tmp_path / "raw", num_cases=4, shape=(24, 40, 40), spacing=(2.0, 1.0, 1.0))
    work = tmp_path / "work"
    assert cli.main(["fingerprint", str(raw), "-o", str(work), "--num-samples", "1000"]) == 0
    capsys.readouterr()
    assert cli.main(["plan", str(work), "--planner", "resenc-l"]) == 0
    out = capsys.readouterr().out
    plans = Plans.load(next((work / "plans").glob("*.json")))
    assert "3d_fullres" in plans
    for name in plans.configuration_names:
        report = plans[name].memory_report
        assert report is not None
        assert report.measured_bytes is not None
        assert report.measured_bytes > 0
        assert report.gpu_memory_gb == 24.0
        assert name in out
