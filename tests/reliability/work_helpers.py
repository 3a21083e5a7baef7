"""A tiny trained work folder (workspace.json, dataset.json, plans, a store, one finished fold), built once per module
and copied per test: the material of the work-folder checks and the corpus."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

TRAINING = Path(__file__).resolve().parents[1] / "training"
SHAPES = [(20, 24, 28), (24, 20, 22), (18, 26, 20), (17, 30, 30), (20, 20, 20)]
TRAIN_ARGS = ["--iterations-per-epoch", "1", "--num-epochs", "2", "--val-iterations", "1", "--num-workers", "0",
              "--device", "cpu", "--keep-checkpoints", "2"]  # fmt: skip
RUN = Path("runs") / "nnUNetPlans__3d_fullres__nnseg" / "fold_0"


def build_trained_work(root: Path) -> Path:
    """``root/work``: the tiny plan's store and fold 0 trained for 2 steps through ``nnseg train``."""
    if str(TRAINING) not in sys.path:
        sys.path.insert(0, str(TRAINING))
    from training_data_helpers import write_tiny_work

    from nnseg.cli.main import main
    from nnseg.workspace import Workspace

    workspace = Workspace(root / "work")
    (root / "raw").mkdir()
    workspace.initialise(root / "raw")
    write_tiny_work(workspace)
    assert main(["train", str(workspace.root), "-c", "3d_fullres", "-f", "0", *TRAIN_ARGS]) == 0
    return workspace.root


def copy_work(template: Path, tmp_path: Path) -> Path:
    """A private copy of the template work folder."""
    return Path(shutil.copytree(template, tmp_path / "work"))


def store_dir(work: Path) -> Path:
    """The one store of the work folder."""
    return next(p for p in (work / "preprocessed").iterdir() if p.is_dir())
