"""Suite-wide helper: a raw dataset taken through fingerprint, plan, preprocess and a tiny 2d training by the CLI."""

from __future__ import annotations

from pathlib import Path

from nnseg.cli import main as cli


def train_tiny_2d(raw: Path, work: Path) -> Path:
    """Fingerprint ``raw`` into ``work``, plan, preprocess 2d and train fold 'all' for 2 steps; return the run."""
    assert cli.main(["fingerprint", str(raw), "-o", str(work), "--num-workers", "1"]) == 0
    assert cli.main(["plan", str(work), "--no-measure"]) == 0
    assert cli.main(["preprocess", str(work), "-c", "2d", "--num-workers", "1"]) == 0
    assert cli.main(["train", str(work), "-c", "2d", "-f", "all", "--iterations-per-epoch", "2", "--num-epochs", "1",
                     "--val-iterations", "1", "--device", "cpu", "--num-workers", "0", "--no-final-validation"]) == 0  # fmt: skip
    return next((work / "runs").glob("*__2d__*/fold_all"))
