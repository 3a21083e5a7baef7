"""examples/two_datasets_one_process.py runs in its smoke mode and keeps the two work folders apart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_two_datasets_one_process_smoke(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "two_datasets_one_process.py"), str(tmp_path), "--smoke"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("\n{") + 1 :])
    assert summary["Dataset001_CT"]["dataset"] == "Dataset001_CT"
    assert summary["Dataset002_MR"]["dataset"] == "Dataset002_MR"
    assert summary["Dataset001_CT"]["labels"] != summary["Dataset002_MR"]["labels"]
    for name in ("Dataset001_CT", "Dataset002_MR"):
        work = tmp_path / "work" / name
        assert (work / "fingerprint.json").is_file()
        assert (work / "plans" / "nnUNetPlans.json").is_file()
        stores = list((work / "preprocessed").iterdir())
        assert len(stores) == 1
        assert len(list(stores[0].glob("*.properties.json"))) == 5
        assert f"{name}: 5 done, 0 missing, 0 stale" in result.stdout
        trained = "trained 1 steps" in result.stdout
        runs = list((work / "runs").glob("*/fold_0/checkpoint_final.pt")) if (work / "runs").is_dir() else []
        assert bool(runs) == trained, "a final checkpoint exists exactly when the example reports training"


def test_sharded_predict_script_runs_every_part_then_the_status(tmp_path: Path) -> None:
    fake = tmp_path / "fake_nnseg"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {tmp_path / "calls.txt"}\n')
    fake.chmod(0o755)
    script = str(REPO / "examples" / "sharded_predict.sh")
    env = {"PATH": "/usr/bin:/bin", "NNSEG": str(fake), "DEVICES": "cuda:0 cuda:1"}
    out = tmp_path / "pred"
    result = subprocess.run(["bash", script, "imgs", str(out), "model", "3", "-f", "0", "1"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    parts = sorted(c for c in calls if "--part-id" in c)
    assert parts == [
        f"predict -i imgs -o {out} -m model --num-parts 3 --part-id {k} --device cuda:{k % 2} -f 0 1" for k in range(3)
    ]
    assert calls[-1] == f"predict --status -o {out}"


def test_sharded_predict_script_rejects_bad_arguments(tmp_path: Path) -> None:
    script = str(REPO / "examples" / "sharded_predict.sh")
    no_args = subprocess.run(["bash", script], capture_output=True, text=True, timeout=60, check=False)
    assert no_args.returncode == 2
    assert "examples/sharded_predict.sh IN OUT MODEL [PARTS [OPTION ...]]" in no_args.stdout
    bad = subprocess.run(["bash", script, "a", str(tmp_path / "b"), "c", "zero"], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert bad.returncode == 2
    assert "PARTS must be a positive integer; got 'zero'" in bad.stderr
