"""``nnseg verify WORK`` / ``verify_work``: a clean work folder passes (exit 0); each damaged artifact is named with
the command that repairs it (exit 1); a folder that is neither a work folder nor a dataset is bad input (exit 2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from work_helpers import RUN, build_trained_work, copy_work, store_dir

from nnseg._verify_work import verify_work
from nnseg.cli.main import main
from nnseg.errors import ConfigError


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_trained_work(tmp_path_factory.mktemp("template"))


def test_a_clean_work_folder_passes(template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = verify_work(template)
    assert report.ok, report.format()
    names = {p.name for p in report.checked}
    assert {"workspace.json", "dataset.json", "nnUNetPlans.json", "run.json", "checkpoint_final.pt",
            "summary_preprocessed.json"} <= names  # fmt: skip
    assert main(["verify", str(template)]) == 0
    assert capsys.readouterr().out.strip().endswith("item(s) checked, OK")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damage_store_file(work: Path) -> None:
    target = next(p for p in sorted(store_dir(work).iterdir()) if p.name.startswith("case_1") and p.suffix == ".b2nd")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the checksum tells
    target.write_bytes(bytes(data))


DAMAGES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "workspace.json": (
        lambda w: (w / "workspace.json").write_text("{"),
        "workspace.json",
        "fix workspace.json, or nnseg fingerprint RAW_DIR -o {work}",
    ),
    "dataset.json": (lambda w: (w / "dataset.json").write_text("[]"), "dataset.json", "copy the raw dataset's"),
    "plans": (
        lambda w: (w / "plans" / "nnUNetPlans.json").write_text('{"x": 1}'),
        "nnUNetPlans.json",
        "nnseg plan {work} --name nnUNetPlans",
    ),
    "store chunk": (
        _damage_store_file,
        "stale or damaged case(s): case_1",
        "nnseg preprocess {work} -c 3d_fullres --plans nnUNetPlans",
    ),
    "final checkpoint": (
        lambda w: _truncate(w / RUN / "checkpoint_final.pt"),
        "checkpoint_final.pt",
        "nnseg train {work} -c 3d_fullres -f 0 --plans nnUNetPlans --run-name nnseg",
    ),
    "run.json": (lambda w: (w / RUN / "run.json").write_text("{"), "run.json", "delete it and run `nnseg train"),
    "validation summary": (
        lambda w: (w / RUN / "validation" / "summary_preprocessed.json").unlink(),
        "the finished run has no validation summary",
        "--val-only",
    ),
    "crossval": (
        lambda w: (w / RUN.parent / "crossval_results_folds_0_1").mkdir(),
        "summary.json is missing",
        "nnseg crossval {work}/runs/nnUNetPlans__3d_fullres__nnseg -f 0 1",
    ),
}


@pytest.mark.parametrize("name", list(DAMAGES))
def test_each_damaged_item_is_named_with_its_repair(
    name: str, template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = copy_work(template, tmp_path)
    damage, problem, repair = DAMAGES[name]
    damage(work)
    assert main(["verify", str(work)]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("DAMAGED ")]
    assert len(lines) == 1, out
    assert problem in lines[0]
    assert repair.format(work=work) in lines[0].split(" -> repair: ")[1]
    assert out.strip().endswith("1 damaged item(s)")


def test_a_damaged_prediction_folder_is_named(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = copy_work(template, tmp_path)
    parts = work / "predictions" / "nnseg_parts"
    parts.mkdir(parents=True)
    (parts / "part_0_of_1.json").write_text(json.dumps({"not": "a manifest"}))
    assert main(["verify", str(work)]) == 1
    out = capsys.readouterr().out
    assert f"DAMAGED {work / 'predictions'}: " in out
    assert f"run the same `nnseg predict ... -o {work / 'predictions'}` again" in out


def test_a_folder_that_is_no_work_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"is not an nnseg work folder \(no workspace.json\); `nnseg verify` takes"):
        verify_work(tmp_path)
    assert main(["verify", str(tmp_path)]) == 2  # checked as a raw dataset: no dataset.json
    assert "dataset.json" in capsys.readouterr().out + capsys.readouterr().err


def test_an_unfinished_prediction_folder_is_a_note_not_damage(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nnseg.inference._parts import PartManifest
    from nnseg.sharding import Shard

    work = copy_work(template, tmp_path)
    folder = work / "predictions"
    folder.mkdir()
    cases = ("case_a", "case_b")
    PartManifest(Shard(0, 1), "model", {"file_ending": ".nii.gz"}, cases, cases).save(folder)
    (folder / "case_a.nii.gz").write_bytes(b"not recorded")  # a file this run did not write: damage, not a gap
    assert main(["verify", str(work)]) == 1
    assert f"DAMAGED {folder}: outputs damaged or not written by this run: case_a" in capsys.readouterr().out

    (folder / "case_a.nii.gz").unlink()
    report = verify_work(work)
    assert report.ok
    assert [d.path for d in report.incomplete] == [folder]
    assert main(["verify", str(work)]) == 0
    out = capsys.readouterr().out
    assert f"INCOMPLETE {folder}: 2 case(s) not predicted yet -> finish: run the same `nnseg predict" in out
    assert "DAMAGED" not in out
    assert out.strip().endswith("OK, 1 unfinished item(s)")
