"""The benchmark runner keeps the hand-written sections of a report; every benchmark's --quick mode runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

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
    written = sorted(p.stem for p in tmp_path.glob("*.json") if p.name != "runs.json")
    expected = sorted(p.stem.removeprefix("bench_") for p in (REPO / "benchmarks").glob("bench_*.py"))
    assert written == expected
    runs = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert sorted(r["stage"] for r in runs) == expected
    assert all(len(r["load"]["before"]["load_average"]) == 3 for r in runs)
    for path in tmp_path.glob("*.json"):
        json.loads(path.read_text())
    assert (tmp_path / "REPORT.md").read_text().startswith("# Benchmark report")


# ------------------------------------------------------------------------------------------------ goals table
def _met_results() -> dict[str, dict[str, Any]]:
    """Synthetic benchmark JSON in the scripts' current shapes, meeting every goal of issue 18."""
    loader = {"settings": {"patch_size": [128, 128, 128], "batch_size": 2},
              "throughput": [{"workers": n, "nnseg_batches_per_s": 2.0 * n, "nnunetv2_batches_per_s": 1.0 * n,
                              "nnseg_cpu_s_per_batch": 0.4, "nnunetv2_cpu_s_per_batch": 1.0} for n in (1, 2)]}  # fmt: skip
    fingerprint = {"rows": [{"variant": v, "workers": n, "seconds": s, "peak_rss_mb": m}
                            for n in (1, 2) for v, s, m in (("nnseg", 1.0, 100), ("nnunetv2", 4.0, 1000))]}  # fmt: skip
    preprocess = {"throughput": [{"tool": t, "workers": n, "seconds": 16 / c, "cases_per_s": c, "peak_rss_mb": m}
                                 for n in (1, 2) for t, c, m in (("nnseg", 4.0 * n, 100), ("nnunetv2", 1.0 * n, 400),
                                                                 ("io-floor", 5.0 * n, 50))]}  # fmt: skip
    predict = {"rows": [{"tool": t, "tta": tta, "seconds_per_case": s, "agreement_with_nnunet": a, **extra}
                        for tta in (False, True)
                        for t, s, a, extra in (("nnunet", 10.0, None, {}), ("nnseg", 4.0, 0.9995, {"agreement_min": 0.9991}),
                                               ("nnseg-fp16", 8.0, 1.0, {}))]}  # fmt: skip
    training = {"timing": {"nnseg": 1.0, "nnunetv2": 1.5, "nnseg (cuda)": 0.1, "nnunetv2 (cuda)": 0.1}}
    return {"dataloader": loader, "fingerprint": fingerprint, "preprocess": preprocess, "predict": predict,
            "training": training}  # fmt: skip


def _by_goal(results: dict[str, Any]) -> dict[str, Any]:
    return {g.goal: g for g in _run_all().check_goals(results)}


def test_goals_table_says_met_when_every_goal_is_reached() -> None:
    goals = _by_goal(_met_results())
    assert len(goals) == 17
    assert {g.status for g in goals.values()} == {"met"}
    assert goals["data loader: N workers >= 0.85 N x one worker"].measured == "2 workers = 2.00x one (needs 1.70x)"
    assert goals["fingerprint, 1 worker: >= 3x at <= 0.3x peak RSS"].measured == "4.00x at 0.10x peak RSS"
    default = goals["prediction, default numerics, TTA on: >= 2x at >= 99.9 % agreement on every case"]
    assert default.measured == "2.50x, 99.910 % (lowest case)"
    assert goals["prediction, --nnunet-numerics, TTA off: identical voxels and >= 1.2x"].measured == "1.25x, identical"
    assert goals["preprocessing: within 1.5x of the IO-only floor"].measured.startswith("1.25x the floor at 1 worker")


def test_goals_table_says_not_met_when_a_part_misses() -> None:
    results = _met_results()
    results["dataloader"]["throughput"][1]["nnseg_batches_per_s"] = 2.8  # 1.4x nnU-Net; 2 workers = 1.4x one
    results["fingerprint"]["rows"][0]["peak_rss_mb"] = 500  # fast enough, but 0.5x the memory
    results["predict"]["rows"][1]["agreement_min"] = 0.998  # nnseg, TTA off: one case below 99.9 %
    results["predict"]["rows"][2]["agreement_with_nnunet"] = 0.99999  # fp16 not identical
    del results["predict"]["rows"][4]["agreement_min"]  # nnseg, TTA on: per-case figures, the mean is fine
    results["predict"]["rows"][4]["agreement_per_case"] = {"case_a": 0.99999, "case_b": 0.9985}
    results["training"]["timing"]["nnseg"] = 1.2  # 1.25x
    goals = _by_goal(results)
    not_met = {name for name, g in goals.items() if g.status == "not met"}
    assert not_met == {
        "data loader: N workers >= 0.85 N x one worker",
        "data loader, 2 workers: >= 1.5x",
        "fingerprint, 1 worker: >= 3x at <= 0.3x peak RSS",
        "prediction, default numerics, TTA off: >= 2x at >= 99.9 % agreement on every case",
        "prediction, default numerics, TTA on: >= 2x at >= 99.9 % agreement on every case",
        "prediction, --nnunet-numerics, TTA off: identical voxels and >= 1.2x",
        "training step, same network, CPU: >= 1.3x",
    }
    assert goals["prediction, default numerics, TTA on: >= 2x at >= 99.9 % agreement on every case"].measured == (
        "2.50x, 99.850 % (lowest case)"
    )
    assert goals["prediction, --nnunet-numerics, TTA off: identical voxels and >= 1.2x"].measured == (
        "1.25x, 99.9990 % agreement"
    )


def test_goals_table_marks_missing_keys_not_measured_without_crashing() -> None:
    assert {g.status for g in _run_all().check_goals({})} == {"not measured"}
    broken = {"dataloader": {"throughput": "oops", "settings": []}, "fingerprint": {"rows": [{"variant": "nnseg"}, 3]},
              "preprocess": {"throughput": [{"tool": "nnseg", "workers": 1, "cases_per_s": "fast"}]},
              "predict": {"rows": [{"tool": "nnseg", "tta": False, "seconds_per_case": 1.0}]},
              "training": {"timing": {"nnseg": 0.0, "nnunetv2": None}}}  # fmt: skip
    goals = _by_goal(broken)
    assert {g.status for g in goals.values()} == {"not measured"}
    assert goals["training step, same network, CUDA: never slower (>= 1x)"].measured == "no CUDA figures in this run"
    results = _met_results()
    for row in results["predict"]["rows"]:
        row.pop("agreement_min", None)  # only the mean: shown as such
    assert _by_goal(results)["prediction, default numerics, TTA off: >= 2x at >= 99.9 % agreement on every case"
                              ].measured == "2.50x, 99.950 % (mean only)"  # fmt: skip


def test_a_loader_measured_at_another_patch_does_not_count_for_the_goal() -> None:
    results = _met_results()
    results["dataloader"]["settings"]["patch_size"] = [64, 64, 64]
    loader = [g for g in _run_all().check_goals(results) if g.stage == "dataloader"]
    assert {g.status for g in loader} == {"not measured"}
    assert loader[0].measured == "2.00x (patch [64, 64, 64], batch 2; the goal is at patch 128^3, batch 2)"


# ------------------------------------------------------------------------------------------------ load recording
FAKE_BENCH = """
import argparse, json, time
parser = argparse.ArgumentParser()
parser.add_argument("--output")
parser.add_argument("--quick", action="store_true")
args = parser.parse_args()
time.sleep(0.3)
rows = [{"variant": v, "workers": n, "seconds": s, "peak_rss_mb": 100} for n in (1, 2) for v, s in (("nnseg", 1.0), ("nnunetv2", 2.0))]
open(args.output, "w").write(json.dumps({"rows": rows, "stages": {"read_ms": 1.5}}))
"""


def test_run_all_records_the_load_of_each_benchmark_and_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_all = _run_all()
    script = tmp_path / "bench_fingerprint.py"
    script.write_text(FAKE_BENCH)
    monkeypatch.setattr(run_all, "discover", lambda only=None: [script])
    monkeypatch.setattr(run_all, "SNAPSHOT_SECONDS", 0.05)
    monkeypatch.setattr(run_all, "MONITOR_PERIOD", 0.1)
    results, report = tmp_path / "results", tmp_path / "REPORT.md"
    args = ["--results-dir", str(results), "--report", str(report), "--note", "idle, nothing else running"]
    assert run_all.main(args) == 0
    (run,) = json.loads((results / "runs.json").read_text())["runs"]
    assert run["stage"] == "fingerprint"
    assert run["ok"]
    for when in ("before", "after"):
        assert len(run["load"][when]["load_average"]) == 3
        assert isinstance(run["load"][when]["other_busy"], int)
    assert run["load"]["during"]["samples"] >= 1
    text = report.read_text()
    assert "**Note:** idle, nothing else running" in text
    assert text.index("## Goals of issue 18") < text.index("## Machine")
    assert "| fingerprint, 2 workers: >= 3x at <= 0.3x peak RSS | 2.00x at 1.00x peak RSS | not met |" in text
    assert "Load while each benchmark ran" in text
    assert "*stages* (where the time goes)" in text
    # a rebuild without --note keeps the stored note and load
    assert run_all.main(["--report-only", "--results-dir", str(results), "--report", str(report)]) == 0
    assert "**Note:** idle, nothing else running" in report.read_text()
    assert "Load while each benchmark ran" in report.read_text()


def test_a_busy_machine_is_warned_about_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run_all = _run_all()
    busy = {"time": "t", "load_average": [1.7, 1.0, 0.5], "other_busy": 2,
            "busy": [{"command": "python -m pytest", "cpu": 0.98}, {"command": "cc1", "cpu": 0.6}]}  # fmt: skip
    assert run_all.idle_warning({**busy, "load_average": [0.4, 1.0, 1.0]}) is None
    monkeypatch.setattr(run_all, "load_snapshot", lambda interval=0.5: busy)
    monkeypatch.setattr(run_all, "run_one", lambda *a, **k: {"stage": "fingerprint", "ok": True, "load": {}})
    monkeypatch.setattr(run_all, "discover", lambda only=None: [tmp_path / "bench_fingerprint.py"])
    assert run_all.main(["--results-dir", str(tmp_path), "--report", str(tmp_path / "R.md")]) == 0
    assert (
        "not idle (1-minute load average 1.70 > 0.5; 2 other busy process(es): python -m pytest (98%), cc1 (60%))"
        in (capsys.readouterr().err)
    )


def test_busy_processes_counts_other_processes_over_the_share() -> None:
    _run_all()  # puts benchmarks/ on sys.path
    from _bench_common import busy_processes

    before = {1: ("python", 10.0), 2: ("idle", 5.0), 3: ("me", 0.0), 4: ("reused", 0.0)}
    after = {1: ("python", 11.8), 2: ("idle", 5.1), 3: ("me", 2.0), 4: ("other", 9.0), 5: ("new", 3.0)}
    assert busy_processes(before, after, 2.0, exclude={3}) == [(1, "python", 0.9)]
    assert busy_processes(before, after, 0.0) == []
