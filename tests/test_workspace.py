"""``Workspace``: explicit per-dataset work folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnseg.errors import ConfigError, DatasetError
from nnseg.workspace import Workspace


def test_constructor_touches_nothing(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "work")
    assert not (tmp_path / "work").exists()
    assert ws.plans_path("nnUNetPlans") == tmp_path / "work" / "plans" / "nnUNetPlans.json"
    assert ws.run_dir("P", "3d_fullres", "default", 0).parts[-2:] == ("P__3d_fullres__default", "fold_0")


def test_initialise_records_raw_dataset_and_is_idempotent(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    ws = Workspace(tmp_path / "work")
    ws.initialise(raw)
    ws.initialise(raw)
    assert ws.raw_dataset_dir() == raw.resolve()


def test_refuses_a_second_dataset(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ws = Workspace(tmp_path / "work")
    ws.initialise(tmp_path / "a")
    with pytest.raises(DatasetError, match="belongs to raw dataset .*a, not .*b; use one work folder per dataset"):
        ws.initialise(tmp_path / "b")


def test_uninitialised_folder_explains_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is not an nnseg work folder.*nnseg fingerprint RAW_DIR -o"):
        Workspace(tmp_path).raw_dataset_dir()


def test_damaged_manifest_is_a_dataset_error(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    workspace.manifest_path.write_text("{not json")
    with pytest.raises(
        DatasetError,
        match=r"workspace\.json is not valid JSON \(Expecting property name enclosed in "
        r"double quotes at line 1, column 2\)",
    ):
        workspace.raw_dataset_dir()
    workspace.manifest_path.write_text('{"format_version": 1}')
    with pytest.raises(
        DatasetError,
        match=r"workspace\.json has no 'raw_dataset' entry \(got \{'format_version': 1\}\); "
        r"expected .*Fix the file, or remove it and run `nnseg fingerprint RAW_DIR -o WORK` again\.",
    ):
        workspace.raw_dataset_dir()


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".", "..", "a\\b"])
def test_names_that_would_leave_their_folder_are_refused(tmp_path: Path, name: str) -> None:
    workspace = Workspace(tmp_path)
    with pytest.raises(ConfigError, match=r"plain name without path separators; got"):
        workspace.plans_path(name)
    with pytest.raises(ConfigError, match=r"the preprocessed store name must be a plain name"):
        workspace.preprocessed_dir(name)
    with pytest.raises(ConfigError, match=r"the run name must be a plain name"):
        workspace.run_dir("nnUNetPlans", "3d_fullres", name, 0)


def test_plain_names_give_the_documented_layout(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    assert workspace.plans_path("nnUNetPlans") == tmp_path / "plans" / "nnUNetPlans.json"
    assert workspace.run_dir("nnUNetPlans", "3d_fullres", "run1", "all") == (
        tmp_path / "runs" / "nnUNetPlans__3d_fullres__run1" / "fold_all"
    )
