"""Sharded prediction in separate processes: parts are disjoint and complete; a killed part is finished by a rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import SimpleITK as sitk
from inference_helpers import make_nnunet_model_folder, write_images

from nnseg.inference import InferenceSettings, Predictor, prediction_status
from nnseg.inference._parts import PartManifest

REPO = Path(__file__).resolve().parents[2]


def _predict_command(model: Path, source: Path, target: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nnseg", "predict", "-i", str(source), "-o", str(target), "-m", str(model),
            "--no-tta", *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_parts_in_separate_processes_are_disjoint_and_complete(tmp_path: Path) -> None:
    model = make_nnunet_model_folder(tmp_path / "model", seed=1)
    ids = write_images(tmp_path / "in", num_cases=5, shape=(6, 17, 16))
    processes = [
        subprocess.Popen(_predict_command(model, tmp_path / "in", tmp_path / "out", "--num-parts", "2", "--part-id", str(k)),
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for k in range(2)
    ]  # fmt: skip
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
    manifests = PartManifest.load_all(tmp_path / "out")
    owned = [set(m.owned_case_ids) for m in manifests]
    assert [sorted(o) for o in owned] == [sorted(ids)[0::2], sorted(ids)[1::2]]  # nnU-Net's -part_id assignment
    assert owned[0].isdisjoint(owned[1])
    assert prediction_status(tmp_path / "out").is_complete
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == [f"{i}.nii.gz" for i in ids]


def test_a_killed_part_is_completed_by_a_rerun(tmp_path: Path) -> None:
    model = make_nnunet_model_folder(tmp_path / "model", seed=1)
    ids = write_images(tmp_path / "in", num_cases=8, shape=(8, 20, 18))
    out = tmp_path / "out"
    process = subprocess.Popen(_predict_command(model, tmp_path / "in", out), env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("case_*.nii.gz")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    done_before = sorted(p.name for p in out.glob("case_*.nii.gz"))
    assert 0 < len(done_before) < len(ids)  # killed mid-run
    status = prediction_status(out)
    assert not status.is_complete
    done = {c for part in status.parts for c in part.done}
    assert {f"{c}.nii.gz" for c in done} <= set(done_before)
    assert set(status.missing) == set(ids) - done
    # an output renamed into place but not yet recorded when the kill came is redone, never trusted
    assert {c for part in status.parts for c in part.redo} == {n[: -len(".nii.gz")] for n in done_before} - done
    (out / ".case_7.nii.gz.12345.tmp").write_bytes(b"torn write")  # what a kill during a write leaves behind
    predictor = Predictor.from_nnunet_model_folder(model, settings=InferenceSettings(use_mirroring=False))
    final = predictor.predict_folder(tmp_path / "in", out, progress=False)
    assert final.is_complete
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(f"{i}.nii.gz" for i in ids)  # no leftovers
    for case_id in ids:
        image = sitk.ReadImage(str(out / f"{case_id}.nii.gz"))  # every file valid
        assert image.GetSize() == sitk.ReadImage(str(tmp_path / "in" / f"{case_id}_0000.nii.gz")).GetSize()
