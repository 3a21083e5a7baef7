"""Cascade training: a lowres fold's validation writes the cascade's input; the cascade trains on it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from training_data_helpers import INTENSITY, make_plan, make_spec, threshold_case, write_store

from nnseg.checkpoint import Checkpoint
from nnseg.cli.main import main
from nnseg.planning import Plans
from nnseg.preprocessing import PreprocessedStore, store_name
from nnseg.training._next_stage import PreviousStageSegmentations
from nnseg.workspace import Workspace

SHAPES = [(20, 24, 24), (24, 20, 22), (18, 26, 20), (20, 20, 20)]
IDS = [f"case_{i}" for i in range(len(SHAPES))]
ARGS = ["--iterations-per-epoch", "1", "--num-epochs", "1", "--val-iterations", "1", "--num-workers", "0",
        "--device", "cpu"]  # fmt: skip
LOWRES_RUN = "nnUNetPlans__3d_lowres__nnseg"


def _plans() -> Plans:
    fullres = make_plan()
    lowres = dataclasses.replace(make_plan(patch=(8, 8, 8)), name="3d_lowres", data_identifier="nnUNetPlans_3d_lowres",
                                 spacing=(2.0, 2.0, 2.0), next_stage="3d_cascade_fullres")  # fmt: skip
    return Plans.from_json({
        "dataset_name": "Dataset001_Synthetic", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": [24, 24, 24],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": fullres.to_json(), "3d_lowres": lowres.to_json(),
                           "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": dict(INTENSITY)},
    })  # fmt: skip


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Plans with a cascade, the fullres store (shared by the cascade), a half-resolution lowres store, 2 folds."""
    plans, spec = _plans(), make_spec()
    workspace = Workspace(tmp_path / "work")
    plans.save(workspace.plans_path("nnUNetPlans"))
    spec.save(workspace.dataset_json_path)
    cases = {case_id: threshold_case(s, seed=i) for i, (case_id, s) in enumerate(zip(IDS, SHAPES))}
    write_store(workspace.preprocessed_dir(store_name(plans["3d_fullres"], spec)), plans["3d_fullres"], spec, cases)
    low = {k: (np.ascontiguousarray(d[:, ::2, ::2, ::2]), np.ascontiguousarray(s[:, ::2, ::2, ::2]))
           for k, (d, s) in cases.items()}  # fmt: skip
    write_store(workspace.preprocessed_dir(store_name(plans["3d_lowres"], spec)), plans["3d_lowres"], spec, low)
    splits = [{"train": IDS[:2], "val": IDS[2:]}, {"train": IDS[2:], "val": IDS[:2]}]
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    return workspace.root


def _fullres_store(work: Path) -> PreprocessedStore:
    plans, spec = _plans(), make_spec()
    return PreprocessedStore(Workspace(work).preprocessed_dir(store_name(plans["3d_fullres"], spec)))


def test_cascade_shares_the_fullres_store() -> None:
    plans, spec = _plans(), make_spec()
    assert store_name(plans["3d_cascade_fullres"], spec) == store_name(plans["3d_fullres"], spec)
    assert store_name(plans["3d_lowres"], spec) != store_name(plans["3d_fullres"], spec)


def test_lowres_folds_then_cascade_inputs_then_cascade(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    splits = ["--splits-file", str(work.parent / "splits.json")]
    cascade = ["train", str(work), "-c", "3d_cascade_fullres", "-f", "0", *ARGS, *splits]
    assert main(cascade) == 2  # no previous stage yet: refused before any step, nothing written
    err = capsys.readouterr().err
    assert "4 case(s) have no previous-stage segmentation" in err
    assert "nnseg train" in err
    assert "-c 3d_lowres" in err
    assert not (work / "runs" / "nnUNetPlans__3d_cascade_fullres__nnseg").exists()

    assert main(["train", str(work), "-c", "3d_lowres", "-f", "0", *ARGS, *splits]) == 0
    assert main(["cascade-inputs", str(work), "-c", "3d_lowres"]) == 1
    out = capsys.readouterr().out
    assert "fold 0: case_2, case_3" in out
    assert "missing: case_0, case_1" in out
    store = _fullres_store(work)
    segs = PreviousStageSegmentations.of(store.root, LOWRES_RUN)
    for case_id in IDS[2:]:  # on the cascade's (full-resolution) grid, labels of the dataset
        seg = segs.read(case_id)
        assert seg.shape == (1, *store.read_properties(case_id).shape_after_resampling)
        assert set(np.unique(seg)) <= {0, 1, 2}

    assert main(["train", str(work), "-c", "3d_lowres", "-f", "1", *ARGS, *splits]) == 0
    assert main(["cascade-inputs", str(work), "-c", "3d_lowres"]) == 0
    assert main(cascade) == 0
    final = work / "runs" / "nnUNetPlans__3d_cascade_fullres__nnseg" / "fold_0" / "checkpoint_final.pt"
    weights = Checkpoint.load(final).network_weights
    first = next(v for k, v in weights.items() if k.endswith("conv.weight"))
    assert first.shape[1] == 1 + 2  # the image and one channel per foreground label
    assert sorted(p.name for p in (final.parent / "validation").glob("*.npy")) == ["case_2.npy", "case_3.npy"]


def test_foreign_previous_stage_files_are_refused(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _fullres_store(work)
    segs = PreviousStageSegmentations.of(store.root, LOWRES_RUN)
    for case_id in IDS:
        shape = store.read_properties(case_id).shape_after_resampling
        segs.write(case_id, np.zeros(shape, np.uint8), fold=0, source={"plans_name": "nnUNetPlans"})
    other = np.zeros((4, 4, 4), np.uint8)
    segs.write("case_1", other, fold=0, source={"plans_name": "nnUNetPlans"})
    cascade = ["train", str(work), "-c", "3d_cascade_fullres", "-f", "0", *ARGS,
               "--splits-file", str(work.parent / "splits.json")]  # fmt: skip
    assert main(cascade) == 2
    assert "case_1.json (and case_1.b2nd): previous-stage segmentation of shape (4, 4, 4)" in capsys.readouterr().err
    segs.write("case_1", np.full(store.read_properties("case_1").shape_after_resampling, 7, np.uint8), fold=0,
               source={"plans_name": "nnUNetPlans"})  # fmt: skip
    assert main(cascade) == 2
    assert "holds label(s) [7]" in capsys.readouterr().err
    segs.write("case_1", np.zeros(store.read_properties("case_1").shape_after_resampling, np.uint8), fold=0,
               source={"plans_name": "nnUNetResEncUNetMPlans"})  # fmt: skip
    assert main(cascade) == 2
    assert "of plans 'nnUNetResEncUNetMPlans', but the cascade uses plans 'nnUNetPlans'" in capsys.readouterr().err
    assert not (work / "runs" / "nnUNetPlans__3d_cascade_fullres__nnseg").exists()
