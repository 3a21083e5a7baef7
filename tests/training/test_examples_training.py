"""examples/custom_trainer.py and examples/step_budget.py run in their smoke modes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, work: Path) -> str:
    result = subprocess.run([sys.executable, str(REPO / "examples" / script), str(work), "--smoke"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_custom_trainer_example(tmp_path: Path) -> None:
    out = _run("custom_trainer.py", tmp_path)
    weighted = torch.load(tmp_path / "runs" / "weighted_ce" / "fold_0" / "checkpoint_final.pt", weights_only=True)
    slim = torch.load(tmp_path / "runs" / "slim" / "fold_0" / "checkpoint_final.pt", weights_only=True)
    assert weighted["train_state"]["step"] == slim["train_state"]["step"] == 2
    first = "encoder.stages.0.0.convs.0.conv.weight"
    assert slim["network_weights"][first].shape[0] * 2 == weighted["network_weights"][first].shape[0]
    assert "slim network has" in out


@pytest.mark.slow
def test_step_budget_example(tmp_path: Path) -> None:
    out = _run("step_budget.py", tmp_path)
    assert "4 steps = 2 epochs x 2" in out
    assert out.count("epoch ") == 2
    assert (
        torch.load(tmp_path / "runs" / "budget_4" / "fold_0" / "checkpoint_final.pt", weights_only=True)["train_state"][
            "step"
        ]
        == 4
    )
