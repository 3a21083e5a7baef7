"""Prediction is never silently wrong: failed writes, foreign or damaged outputs, concurrent parts, bad inputs
among good ones, and stops by a signal. Each test runs the real code path (subprocesses where a process-level
fault is needed) on tiny images."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnseg._integrity import sha256_file
from nnseg.cli import main as cli
from nnseg.errors import LockError
from nnseg.inference import InferenceSettings, Predictor, prediction_status
from nnseg.inference._parts import PartManifest
from nnseg.sharding import Shard

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from inference_helpers import make_nnunet_model_folder, write_images  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NO_TTA = InferenceSettings(use_mirroring=False)
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="POSIX limits and signals")

# Runs `nnseg predict ARGS...` in a child process, optionally under a file-size limit, optionally with each case's
# network work slowed down and announced (a file per started case), so that a test can act in the middle of a run.
CHILD = textwrap.dedent("""
    import resource, sys, time
    from pathlib import Path
    limit, pause, marks = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    if pause > 0:
        from nnseg.inference import Predictor
        original = Predictor.predict_logits
        def slow(self, data):
            Path(marks, f"started_{len(list(Path(marks).iterdir()))}").write_text("")
            time.sleep(pause)
            return original(self, data)
        Predictor.predict_logits = slow
    from nnseg.cli.main import main
    sys.exit(main(sys.argv[4:]))
""")


def _child(args: list[str], marks: Path, *, limit: int = 0, pause: float = 0.0) -> subprocess.Popen[bytes]:
    marks.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(limit), str(pause), str(marks), "predict", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _wait_for(condition: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_nnunet_model_folder(tmp_path_factory.mktemp("model") / "m", seed=1)


@POSIX_ONLY
@pytest.mark.parametrize("probabilities", [False, True], ids=["segmentation", "probabilities"])
def test_failed_write_exits_1_keeps_nothing_partial_and_a_rerun_equals_an_undisturbed_run(
    model: Path, tmp_path: Path, probabilities: bool
) -> None:
    write_images(tmp_path / "in", num_cases=2, shape=(12, 40, 40))
    out = tmp_path / "out"
    extra = ["--save-probabilities"] if probabilities else []
    args = ["-i", str(tmp_path / "in"), "-o", str(out), "-m", str(model), "--no-tta", *extra]
    child = _child(args, tmp_path / "marks", limit=2500)  # the manifest fits, a case's first output does not
    _, err = child.communicate(timeout=300)
    assert child.returncode == 1, err.decode()
    first = out / ("case_0.npz" if probabilities else "case_0.nii.gz")
    assert (f"nnseg predict: error: WriteError: cannot write {first}: this process may write files of at most 2500 "
            "bytes (file-size limit, `ulimit -f`)") in err.decode()  # fmt: skip
    assert (
        "nothing was kept under that name. Free space (or raise the limit) and run the same command again"
        in err.decode()
    )
    assert sorted(p.name for p in out.iterdir()) == ["nnseg_parts"]  # no partial file, no temporary file
    assert not prediction_status(out).parts[0].done
    assert cli.main(["predict", *args]) == 0  # the limit is gone
    reference = tmp_path / "reference"
    assert cli.main(["predict", *args[:2], "-o", str(reference), *args[4:]]) == 0
    assert _outputs(out) == _outputs(reference)  # byte-identical to an undisturbed run
    assert prediction_status(out).is_complete


def test_outputs_of_another_model_or_damaged_ones_are_redone_not_reported_done(model: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", num_cases=3, shape=(6, 17, 16))
    predictor = Predictor.from_nnunet_model_folder(model, settings=NO_TTA)
    reference = tmp_path / "reference"
    predictor.predict_folder(tmp_path / "in", reference, progress=False)
    other = Predictor.from_nnunet_model_folder(make_nnunet_model_folder(tmp_path / "other", seed=7), settings=NO_TTA)
    out = tmp_path / "out"
    other.predict_folder(tmp_path / "in", out, progress=False)
    shutil.rmtree(out / "nnseg_parts")  # what the message of a mixed folder suggests, with the outputs left behind
    assert _outputs(out) != _outputs(reference)
    assert predictor.predict_folder(tmp_path / "in", out, progress=False).is_complete
    assert _outputs(out) == _outputs(reference)  # every foreign output was predicted again by this model

    (out / "case_1.nii.gz").write_bytes((out / "case_1.nii.gz").read_bytes()[:-40])  # truncated
    damaged = bytearray((out / "case_2.nii.gz").read_bytes())
    damaged[-12] ^= 0xFF  # one changed byte: same size, other checksum
    (out / "case_2.nii.gz").write_bytes(bytes(damaged))
    status = prediction_status(out)
    assert not status.is_complete
    assert status.missing == ("case_1", "case_2")
    assert status.parts[0].redo == ("case_1", "case_2")
    assert ("part 0 of 1: incomplete, 1/3 case(s) done; missing: case_1, case_2 (outputs not written by this run, or "
            "damaged: case_1, case_2)") in status.summary()  # fmt: skip
    assert predictor.predict_folder(tmp_path / "in", out, progress=False).is_complete
    assert _outputs(out) == _outputs(reference)


def test_an_output_copied_in_without_a_record_is_not_done(model: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    write_images(tmp_path / "in", num_cases=2, shape=(6, 17, 16))
    predictor = Predictor.from_nnunet_model_folder(model, settings=NO_TTA)
    out = tmp_path / "out"
    predictor.predict_folder(tmp_path / "in", out, shard=Shard(0, 2), progress=False)
    shutil.copy(out / "case_0.nii.gz", out / "case_1.nii.gz")  # part 1 never ran; its case holds a stranger's file
    status = prediction_status(out)
    assert status.parts[1].redo == ("case_1",)
    assert status.missing == ("case_1",)
    with caplog.at_level(logging.WARNING, logger="nnseg.inference._folder"):
        assert predictor.predict_folder(tmp_path / "in", out, shard=Shard(1, 2), progress=False).is_complete
    assert "predicting case_1 again: case_1.nii.gz was not written by this run" in caplog.text
    assert (out / "case_1.nii.gz").read_bytes() != (out / "case_0.nii.gz").read_bytes()


@POSIX_ONLY
def test_a_second_process_of_the_same_part_is_refused_and_a_dead_ones_lock_taken_over(
    model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_images(tmp_path / "in", num_cases=4, shape=(6, 17, 16))
    out = tmp_path / "out"
    marks = tmp_path / "marks"
    args = [
        "-i",
        str(tmp_path / "in"),
        "-o",
        str(out),
        "-m",
        str(model),
        "--no-tta",
        "--num-parts",
        "2",
        "--part-id",
        "0",
    ]
    first = _child(args, marks, pause=60.0)
    try:
        _wait_for(lambda: any(marks.iterdir()), "the first process to start predicting")
        predictor = Predictor.from_nnunet_model_folder(model, settings=NO_TTA)
        lock = out / "nnseg_parts" / ".part_0_of_2.lock"
        with pytest.raises(LockError, match=rf"^prediction of part 0 of 2 into {out} is already running: pid "
                           rf"{first.pid} on host {socket.gethostname()}, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d holds "
                           rf"{lock}"):  # fmt: skip
            predictor.predict_folder(tmp_path / "in", out, shard=Shard(0, 2), progress=False)
        assert cli.main(["predict", *args]) == 1  # a held lock is a failed run
        predictor.predict_folder(tmp_path / "in", out, shard=Shard(1, 2), progress=False)  # another part may run
    finally:
        first.kill()
        first.wait()
    assert lock.is_file()  # left behind by the killed process
    with caplog.at_level(logging.WARNING, logger="nnseg._lock"):
        assert predictor.predict_folder(tmp_path / "in", out, shard=Shard(0, 2), progress=False).is_complete
    assert f"taking over {lock}: its owner (pid {first.pid} on host" in caplog.text
    assert not lock.exists()


def test_bad_inputs_among_good_ones_are_named_and_the_good_ones_written(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in"
    write_images(source, num_cases=5, shape=(6, 17, 16))
    truncated = source / "case_1_0000.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[:-200])
    image = sitk.ReadImage(str(source / "case_2_0000.nii.gz"))
    array = sitk.GetArrayFromImage(image)
    array[2, 5, 5] = np.nan
    nan_image = sitk.GetImageFromArray(array)
    nan_image.CopyInformation(image)
    sitk.WriteImage(nan_image, str(source / "case_2_0000.nii.gz"))
    shutil.copy(source / "case_3_0000.nii.gz", source / "case_3_0001.nii.gz")  # one channel too many
    out = tmp_path / "out"
    assert cli.main(["predict", "-i", str(source), "-o", str(out), "-m", str(model), "--no-tta"]) == 1
    err = capsys.readouterr().err
    assert "nnseg predict: 3 of 5 case(s) failed (part 0 of 1): case_1: ImageIOError: image file " in err
    assert (
        f"case_2: ImageIOError: image file {source / 'case_2_0000.nii.gz'} holds 1 NaN and 0 infinite value(s)" in err
    )
    assert ("case_3: extra channel file(s) [1]; the model expects exactly 1 channel(s) ['MRI'] (_0000 to _0000). Fix "
            "those inputs and rerun to predict them") in err  # fmt: skip
    assert sorted(p.name for p in out.glob("case_*")) == ["case_0.nii.gz", "case_4.nii.gz"]
    assert prediction_status(out).missing == ("case_1", "case_2", "case_3")
    with gzip.open(truncated) as handle, pytest.raises(EOFError):
        handle.read()  # the input really was damaged


@POSIX_ONLY
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_between_cases_and_a_rerun_finishes(model: Path, tmp_path: Path, stop: signal.Signals) -> None:
    write_images(tmp_path / "in", num_cases=6, shape=(6, 17, 16))
    out = tmp_path / "out"
    marks = tmp_path / "marks"
    args = ["-i", str(tmp_path / "in"), "-o", str(out), "-m", str(model), "--no-tta", "--save-probabilities"]
    child = _child(args, marks, pause=0.4)
    _wait_for(lambda: len(list(marks.iterdir())) >= 2, "the second case to start")
    child.send_signal(stop)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 128 + stop, err.decode()  # 143 for SIGTERM, 130 for SIGINT
    assert (f"nnseg predict: part 0 of 1 of {out} stopped by {stop.name} between cases; every finished case is "
            "written and recorded, nothing is half-written. Run the same command again") in err.decode()  # fmt: skip
    status = prediction_status(out)
    done = status.parts[0].done
    assert 1 <= len(done) < 6
    assert not status.parts[0].redo  # every file present is recorded
    written = {p.name for p in out.iterdir() if p.is_file()}
    assert written == {f"{c}{suffix}" for c in done for suffix in (".nii.gz", ".npz", ".json")}  # nothing half-written
    assert not (out / "nnseg_parts" / ".part_0_of_1.lock").exists()
    rerun = _child(args, tmp_path / "marks_rerun")  # the same environment (threads) as the stopped run
    reference = tmp_path / "reference"
    undisturbed = _child([*args[:2], "-o", str(reference), *args[4:]], tmp_path / "marks_reference")
    for process in (rerun, undisturbed):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
    assert prediction_status(out).is_complete
    assert _outputs(out) == _outputs(reference)


def test_manifest_records_the_checksum_of_every_file(model: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", num_cases=1, shape=(6, 17, 16))
    Predictor.from_nnunet_model_folder(model, settings=NO_TTA).predict_folder(
        tmp_path / "in", tmp_path / "out", save_probabilities=True, progress=False
    )
    (manifest,) = PartManifest.load_all(tmp_path / "out")
    assert sorted(manifest.done["case_0"]) == ["case_0.json", "case_0.nii.gz", "case_0.npz"]
    assert manifest.done["case_0"]["case_0.npz"] == sha256_file(tmp_path / "out" / "case_0.npz")
