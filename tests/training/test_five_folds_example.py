"""examples/five_folds_to_final.sh: synth -> ... -> train 2 configurations x 2 folds (--npz) -> find-best."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "five_folds_to_final.sh"


def test_five_folds_to_final_runs_the_whole_path(tmp_path: Path) -> None:
    env = {**os.environ, "NNSEG": f"{sys.executable} -m nnseg", "PYTHONPATH": str(REPO), "DEVICE": "cpu"}
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path), "2"], env=env, capture_output=True, text=True,
                            timeout=900, check=False, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    work = tmp_path / "work"
    winner = json.loads((work / "best.json").read_text())["winner"]
    assert f"chosen model: {winner}\n" in result.stdout
    assert (work / "inference_instructions.txt").is_file()
    assert len(json.loads((work / "splits_final.json").read_text())) == 5  # nnU-Net's folds, in the work folder
    for configuration in ("2d", "3d_fullres"):
        for fold in (0, 1):
            validation = work / "runs" / f"nnUNetPlans__{configuration}__nnseg" / f"fold_{fold}" / "validation"
            assert list(validation.glob("*.npz")), validation  # --npz: probabilities for the ensembles
            assert (validation / "summary.json").is_file()  # against the raw labels (workspace.json knows them)


def test_five_folds_to_final_rejects_bad_arguments(tmp_path: Path) -> None:
    usage = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2
    assert "examples/five_folds_to_final.sh DIR [STEPS]" in usage.stdout
    bad = subprocess.run(["bash", str(SCRIPT), str(tmp_path), "zero"], capture_output=True, text=True, timeout=60,
                         check=False)  # fmt: skip
    assert bad.returncode == 2
    assert "STEPS must be a positive integer; got 'zero'" in bad.stderr
