"""Model zips: export -> import -> predict equals predicting from the run; nnU-Net's zips install; bad zips refused."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from inference_helpers import make_nnseg_run, make_nnunet_model_folder, write_images

from nnseg.cli.main import main
from nnseg.errors import ModelZipError
from nnseg.inference import InferenceSettings, Predictor
from nnseg.model_zip import export_model, import_model


def _segmentations(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(folder.glob("*.nii.gz"))}


@pytest.fixture
def run_root(tmp_path: Path) -> Path:
    root = tmp_path / "work" / "runs" / "nnUNetPlans__3d_fullres__nnseg"
    for fold in (0, 1):
        make_nnseg_run(root / f"fold_{fold}", seed=fold)
        (root / f"fold_{fold}" / "run.json").write_text(json.dumps({"fold": fold}))
    return root


def test_export_import_predict_equals_the_run(tmp_path: Path, run_root: Path) -> None:
    write_images(tmp_path / "in", num_cases=2)
    zip_path = export_model(run_root, tmp_path / "model.zip")
    installed = import_model(zip_path, tmp_path / "installed")
    assert installed.nnseg_runs == (tmp_path / "installed" / run_root.name,)
    assert sorted(p.name for p in installed.nnseg_runs[0].iterdir()) == ["fold_0", "fold_1"]
    folds = [run_root / "fold_0", run_root / "fold_1"]
    Predictor.from_run(folds, settings=InferenceSettings(use_mirroring=False)).predict_folder(
        tmp_path / "in", tmp_path / "a", progress=False
    )
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "b"), "-m", str(installed.models[0]),
                 "--no-tta"]) == 0  # fmt: skip
    a, b = _segmentations(tmp_path / "a"), _segmentations(tmp_path / "b")
    assert a.keys() == b.keys()
    assert len(a) == 2
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_export_chooses_folds_and_checkpoint(tmp_path: Path, run_root: Path) -> None:
    export_model(run_root, tmp_path / "one.zip", folds=[1])
    names = zipfile.ZipFile(tmp_path / "one.zip").namelist()
    assert f"{run_root.name}/fold_1/checkpoint_final.pt" in names
    assert f"{run_root.name}/fold_1/run.json" in names
    assert not any("fold_0" in n for n in names)
    with pytest.raises(
        ModelZipError, match=r"fold\(s\) \['3'\] of .* have no checkpoint_final.pt; folds with it: \['0', '1'\]"
    ):
        export_model(run_root, tmp_path / "x.zip", folds=[3])
    with pytest.raises(ModelZipError, match="has no fold_<k>/checkpoint_best.pt"):
        export_model(run_root, tmp_path / "x.zip", checkpoint="best")
    assert not (tmp_path / "x.zip").exists()


def _zip_with(path: Path, entries: dict[str, bytes], *, link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    ("entries", "link", "message"),
    [
        ({"../evil.txt": b"x"}, None, r"holds the entry '\.\./evil\.txt', which would land outside the target folder"),
        ({"a/../../evil.txt": b"x"}, None, r"would land outside the target folder"),
        ({"/abs.txt": b"x"}, None, r"would land outside the target folder"),
        ({"m/fold_0/checkpoint_final.pth": b"x"}, "m/link", r"holds a link 'm/link'"),
        (
            {"Dataset001_X/T__P__3d/fold_0/checkpoint_final.pth": b"x", "Dataset001_X/T__P__3d/dataset.json": b"{}"},
            None,
            r"the model folder Dataset001_X/T__P__3d has no plans.json",
        ),
        ({"readme.txt": b"x"}, None, r"holds no model"),
    ],
)
def test_unsafe_or_incomplete_zips_are_refused_and_leave_nothing(
    tmp_path: Path, entries: dict[str, bytes], link: str | None, message: str
) -> None:
    archive = _zip_with(tmp_path / "bad.zip", entries, link=link)
    target = tmp_path / "out"
    with pytest.raises(ModelZipError, match=message):
        import_model(archive, target)
    assert not target.exists() or list(target.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_size_limit_truncation_and_tampering(tmp_path: Path, run_root: Path) -> None:
    archive = export_model(run_root, tmp_path / "model.zip")
    with pytest.raises(ModelZipError, match=r"expands to more than 1000 bytes \(the limit\)"):
        import_model(archive, tmp_path / "small", max_bytes=1000)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ModelZipError, match="is not a readable zip"):
        import_model(truncated, tmp_path / "t")
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data + b"x" if info.filename.endswith("run.json") else data)
    with pytest.raises(ModelZipError, match=r"fold_0/run.json is damaged \(its SHA-256 does not match"):
        import_model(tampered, tmp_path / "tam")
    assert list((tmp_path / "tam").iterdir()) == []
    import_model(archive, tmp_path / "ok")
    with pytest.raises(ModelZipError, match="already holds .* Pass --overwrite"):
        import_model(archive, tmp_path / "ok")
    import_model(archive, tmp_path / "ok", overwrite=True)


def test_cli_exit_codes(tmp_path: Path, run_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-model", str(run_root), "-o", str(tmp_path / "m.zip")]) == 0
    assert main(["import-model", str(tmp_path / "m.zip"), "-o", str(tmp_path / "dir")]) == 0
    assert "nnseg predict -i IN -o OUT -m" in capsys.readouterr().out
    bad = _zip_with(tmp_path / "bad.zip", {"../x": b"1"})
    assert main(["import-model", str(bad), "-o", str(tmp_path / "dir2")]) == 2
    assert "ModelZipError" in capsys.readouterr().err
    assert main(["import-model", str(bad), "-o", str(tmp_path / "d3"), "--max-size-gb", "0"]) == 2
    assert "--max-size-gb must be a number in (0, inf)" in capsys.readouterr().err


@pytest.mark.parity
def test_nnunet_exported_zip_predicts_as_its_folder(tmp_path: Path) -> None:
    pytest.importorskip("nnunetv2.model_sharing.model_export")
    results = tmp_path / "nnUNet_results"
    model = make_nnunet_model_folder(results / "Dataset001_Tiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres", seed=2)
    (model / "fold_0" / "progress.png").write_bytes(b"png")
    (model / "dataset_fingerprint.json").write_text("{}")
    (model / "fold_0" / "validation").mkdir()
    (model / "fold_0" / "validation" / "summary.json").write_text("{}")
    script = textwrap.dedent(f"""
        from nnunetv2.model_sharing.model_export import export_pretrained_model
        export_pretrained_model("Dataset001_Tiny", {str(tmp_path / "nnunet.zip")!r}, configurations=("3d_fullres",),
                                folds=(0,))
    """)
    env = {
        **os.environ,
        "nnUNet_results": str(results),
        "nnUNet_raw": str(tmp_path),
        "nnUNet_preprocessed": str(tmp_path),
    }
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True)
    installed = import_model(tmp_path / "nnunet.zip", tmp_path / "installed")
    assert installed.nnunet_models == (tmp_path / "installed" / model.relative_to(results),)
    write_images(tmp_path / "in", num_cases=2)
    for folder, out in ((model, "a"), (installed.nnunet_models[0], "b")):
        Predictor.from_nnunet_model_folder(folder).predict_folder(tmp_path / "in", tmp_path / out, progress=False)
    a, b = _segmentations(tmp_path / "a"), _segmentations(tmp_path / "b")
    assert a.keys() == b.keys()
    assert len(a) == 2
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
