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
    from training_data_helpers import INTENSITY, make_plan, make_spec, threshold_case, write_store

    from nnseg.cli.main import main
    from nnseg.planning import Plans
    from nnseg.preprocessing import store_name
    from nnseg.workspace import Workspace

    plan, spec = make_plan(), make_spec()
    workspace = Workspace(root / "work")
    (root / "raw").mkdir()
    workspace.initialise(root / "raw")
    plans = Plans.from_json({
        "dataset_name": "Dataset001_Synthetic", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": [24, 24, 24],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": plan.to_json()}, "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {"0": dict(INTENSITY)},
    })  # fmt: skip
    plans.save(workspace.plans_path("nnUNetPlans"))
    spec.save(workspace.dataset_json_path)
    cases = {f"case_{i}": threshold_case(s, seed=i) for i, s in enumerate(SHAPES)}
    write_store(workspace.preprocessed_dir(store_name(plans["3d_fullres"], spec)), plans["3d_fullres"], spec, cases)
    assert main(["train", str(workspace.root), "-c", "3d_fullres", "-f", "0", *TRAIN_ARGS]) == 0
    return workspace.root


def copy_work(template: Path, tmp_path: Path) -> Path:
    """A private copy of the template work folder."""
    return Path(shutil.copytree(template, tmp_path / "work"))


def store_dir(work: Path) -> Path:
    """The one store of the work folder."""
    return next(p for p in (work / "preprocessed").iterdir() if p.is_dir())
