"""The corpus of issue 16: broken inputs and artifacts across every stage, each run through the ``nnseg`` command
in-process. Each gives its named error (or the verify line naming it) with the documented exit code (2 bad input
or usage, 1 a failed run or damaged artifacts) and leaves no temporary file behind.

The subprocess-heavy faults have their own tests, not repeated here: full disks and file-size limits
(tests/reliability/test_failed_writes.py, test_checkpoint_faults.py, test_prediction_faults.py), kills and signals
(tests/training/test_kill_resume.py, tests/training/test_graceful_stop.py, tests/inference/ kill tests),
concurrent processes (tests/reliability/test_lock.py, tests/training/test_graceful_stop.py).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from work_helpers import RUN, TRAIN_ARGS, build_trained_work, copy_work, store_dir

from nnseg.cli.main import main
from nnseg.testing import make_synthetic_dataset

Case = Callable[[Path, Path, Path], list[str]]  # (work copy, raw copy, tmp_path) -> argv
TRAIN = ["-c", "3d_fullres", "-f", "0", *TRAIN_ARGS]


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = build_trained_work(tmp_path_factory.mktemp("work"))
    raw = make_synthetic_dataset(tmp_path_factory.mktemp("raw"), num_cases=3, shape=(8, 10, 10))
    return work, raw


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _image(raw: Path, case: int = 0, channel: int = 0) -> Path:
    return raw / "imagesTr" / f"case_{case:03d}_{channel:04d}.nii.gz"


def _label(raw: Path, case: int = 0) -> Path:
    return raw / "labelsTr" / f"case_{case:03d}.nii.gz"


def _dataset_json(raw: Path, **changes: object) -> None:
    data = json.loads((raw / "dataset.json").read_text())
    data.update(changes)
    (raw / "dataset.json").write_text(json.dumps(data))


def _flip_gzip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _nifti_with(path: Path, edit: Callable[[bytearray], None]) -> None:
    data = bytearray(gzip.decompress(path.read_bytes()))
    edit(data)
    path.write_bytes(gzip.compress(bytes(data)))


def _float_nan(data: bytearray) -> None:
    import numpy as np

    data[70:72] = np.int16(16).tobytes()  # datatype FLOAT32
    data[72:74] = np.int16(32).tobytes()
    offset = int(np.frombuffer(bytes(data[108:112]), np.float32)[0])
    count = (len(data) - offset) // 4
    values = np.zeros(count, np.float32)
    values[3] = np.nan
    data[offset:] = values.tobytes()


def _pixdim_zero(data: bytearray) -> None:
    import numpy as np

    data[80:84] = np.float32(0.0).tobytes()  # pixdim[1]


def _latest_from_final(work: Path, transform: Callable[[Path], None]) -> None:
    """Turn the finished run into one killed before its end with a damaged checkpoint_latest.pt."""
    run = work / RUN
    (run / "checkpoint_final.pt").rename(run / "checkpoint_latest.pt")
    transform(run / "checkpoint_latest.pt")


def _torch_save(content: object) -> Callable[[Path], None]:
    return lambda path: torch.save(content, path)


class _Pickled:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.getpid, ())


def _hold_lock(work: Path) -> None:
    (work / RUN).mkdir(parents=True, exist_ok=True)
    (work / RUN / "checkpoint_final.pt").unlink()
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "what": "training"}
    (work / RUN / ".train.lock").write_text(json.dumps(owner))


def _damage_store(work: Path, what: str) -> None:
    store = store_dir(work)
    if what == "manifest":
        (store / "store.json").write_text("{")
        return
    target = sorted(p for p in store.iterdir() if p.name.startswith("case_1") and p.suffix == ".b2nd")[0]
    if what == "truncate":
        _truncate(target)
    else:
        _flip_gzip_byte(target)


def _work_verify(damage: Callable[[Path], None]) -> Case:
    def case(work: Path, raw: Path, tmp: Path) -> list[str]:
        damage(work)
        return ["verify", str(work)]

    return case


def _raw_verify(damage: Callable[[Path], None]) -> Case:
    def case(work: Path, raw: Path, tmp: Path) -> list[str]:
        damage(raw)
        return ["verify", str(raw)]

    return case


def _train(damage: Callable[[Path], None], *extra: str) -> Case:
    def case(work: Path, raw: Path, tmp: Path) -> list[str]:
        damage(work)
        return ["train", str(work), *TRAIN, *extra]

    return case


def _predict(setup: Callable[[Path, Path, Path], list[str]]) -> Case:
    return setup


# name -> (case, exit code, text that names the fault in the output)
CORPUS: dict[str, tuple[Case, int, str]] = {
    # images and labels (nnseg verify RAW: every problem listed, exit 2)
    "image: truncated .nii.gz": (_raw_verify(lambda r: _truncate(_image(r))), 2, "compressed stream is broken"),
    "image: CRC error": (_raw_verify(lambda r: _flip_gzip_byte(_image(r, 1))), 2, "case_001"),
    "image: not an image at all": (_raw_verify(lambda r: _write(_image(r), "hello")), 2, "case_000"),
    "image: empty file": (_raw_verify(lambda r: _image(r).write_bytes(b"")), 2, "case_000"),
    "image: NaN stored": (_raw_verify(lambda r: _nifti_with(_image(r), _float_nan)), 2, "NaN"),
    "image: zero spacing": (_raw_verify(lambda r: _nifti_with(_image(r), _pixdim_zero)), 2, "spacing"),
    "image: missing channel file": (_raw_verify(lambda r: _image(r, 2).unlink()), 2, "case_002"),
    "label: missing": (_raw_verify(lambda r: _label(r).unlink()), 2, "case_000"),
    "label: truncated": (_raw_verify(lambda r: _truncate(_label(r, 1))), 2, "case_001"),
    "label: from another case shape": (
        _raw_verify(lambda r: _label(r, 0).write_bytes(_image(r, 1).read_bytes())),
        2,
        "case_000",
    ),
    # dataset.json
    "dataset.json: not JSON": (_raw_verify(lambda r: _write(r / "dataset.json", "{")), 2, "dataset.json"),
    "dataset.json: missing": (_raw_verify(lambda r: (r / "dataset.json").unlink()), 2, "dataset.json"),
    "dataset.json: no labels": (_raw_verify(lambda r: _dataset_json(r, labels=None)), 2, "labels"),
    "dataset.json: no background": (_raw_verify(lambda r: _dataset_json(r, labels={"a": 1})), 2, "background"),
    "dataset.json: wrong numTraining": (_raw_verify(lambda r: _dataset_json(r, numTraining=7)), 2, "numTraining"),
    "dataset.json: unknown file ending": (_raw_verify(lambda r: _dataset_json(r, file_ending=".xyz")), 2, ".xyz"),
    # work folder artifacts (nnseg verify WORK: damaged items with their repair, exit 1)
    "work: workspace.json not JSON": (_work_verify(lambda w: _write(w / "workspace.json", "{")), 1, "workspace.json"),
    "work: dataset.json damaged": (_work_verify(lambda w: _write(w / "dataset.json", "[]")), 1, "dataset.json"),
    "work: fingerprint.json damaged": (
        _work_verify(lambda w: _write(w / "fingerprint.json", "{")),
        1,
        "fingerprint.json",
    ),
    "plans: not JSON": (_work_verify(lambda w: _write(w / "plans" / "nnUNetPlans.json", "{")), 1, "PlansError"),
    "plans: no configurations": (
        _work_verify(lambda w: _write(w / "plans" / "nnUNetPlans.json", "{}")),
        1,
        "PlansError",
    ),
    "store: manifest damaged": (_work_verify(lambda w: _damage_store(w, "manifest")), 1, "store.json"),
    "store: truncated case": (_work_verify(lambda w: _damage_store(w, "truncate")), 1, "case_1"),
    "store: undecodable chunk of the right size": (_work_verify(lambda w: _damage_store(w, "flip")), 1, "case_1"),
    "checkpoint: final truncated": (
        _work_verify(lambda w: _truncate(w / RUN / "checkpoint_final.pt")),
        1,
        "CheckpointError",
    ),
    "checkpoint: best is garbage": (
        _work_verify(lambda w: _write(w / RUN / "checkpoint_best.pt", "x")),
        1,
        "checkpoint_best.pt",
    ),
    "run: run.json damaged": (_work_verify(lambda w: _write(w / RUN / "run.json", "{")), 1, "run.json"),
    "run: validation summary lost": (
        _work_verify(lambda w: (w / RUN / "validation" / "summary_preprocessed.json").unlink()),
        1,
        "--val-only",
    ),
    "crossval: summary missing": (
        _work_verify(lambda w: (w / RUN.parent / "crossval_results_folds_0").mkdir()),
        1,
        "summary.json is missing",
    ),
    "probabilities/prediction: foreign part manifest": (
        _work_verify(
            lambda w: (
                (w / "pred" / "nnseg_parts").mkdir(parents=True),
                _write(w / "pred" / "nnseg_parts" / "part_0_of_1.json", "[]"),
            )
        ),
        1,
        "pred",
    ),
    # training (nnseg train)
    "checkpoint: latest truncated on resume": (
        _train(lambda w: _latest_from_final(w, _truncate)),
        2,
        "CheckpointError: cannot resume the run in",
    ),
    "checkpoint: latest of a future format": (
        _train(lambda w: _latest_from_final(w, _torch_save({"format_version": 99, "network_weights": {}}))),
        2,
        "format_version 99",
    ),
    "checkpoint: latest with a pickled payload": (
        _train(
            lambda w: _latest_from_final(
                w, _torch_save({"format_version": 2, "network_weights": {}, "train_state": {}, "x": _Pickled()})
            )
        ),
        2,
        "holds pickled Python objects",
    ),
    "checkpoint: latest not an nnseg checkpoint": (
        _train(lambda w: _latest_from_final(w, _torch_save({"weights": {}}))),
        2,
        "is not an nnseg checkpoint",
    ),
    "checkpoint: latest missing train_state": (
        _train(lambda w: _latest_from_final(w, _torch_save({"format_version": 2, "network_weights": {}}))),
        2,
        "lacks key(s) ['train_state']",
    ),
    "concurrent: a live trainer holds the run folder": (_train(_hold_lock), 1, "LockError: training in run folder"),
    "train: plans damaged": (_train(lambda w: _write(w / "plans" / "nnUNetPlans.json", "{")), 2, "PlansError"),
    "train: splits file malformed": (
        _train(lambda w: _write(w / "splits_final.json", '{"train": 1}')),
        2,
        "ConfigError",
    ),
    "train: store manifest damaged": (_train(lambda w: _damage_store(w, "manifest")), 2, "StoreError"),
    "train: bad option": (_train(lambda w: None, "--grad-clip-norm", "x"), 2, "--grad-clip-norm must be a number"),
    # model folders and zips
    "model folder: no checkpoints": (
        _predict(lambda w, r, t: ["predict", "-i", str(r / "imagesTr"), "-o", str(t / "out"), "-m", str(t)]),
        2,
        "ConfigError",
    ),
    "model zip: not a zip": (
        _predict(
            lambda w, r, t: (_write(t / "m.zip", "not a zip"), ["import-model", str(t / "m.zip"), "-o", str(t / "m")])[
                1
            ]
        ),
        2,
        "ModelZipError",
    ),
    "model zip: truncated": (
        _predict(
            lambda w, r, t: (
                main(["export-model", str(w / RUN.parent), "-o", str(t / "m.zip")]),
                _truncate(t / "m.zip"),
                ["import-model", str(t / "m.zip"), "-o", str(t / "m")],
            )[2]
        ),
        2,
        "ModelZipError",
    ),
    "prediction: model with a damaged final checkpoint": (
        _predict(
            lambda w, r, t: (
                _truncate(w / RUN / "checkpoint_final.pt"),
                ["predict", "-i", str(r / "imagesTr"), "-o", str(t / "out"), "-m", str(w / RUN)],
            )[1]
        ),
        2,
        "CheckpointError",
    ),
}


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus(name: str, templates: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    work = copy_work(templates[0], tmp_path)
    raw = Path(shutil.copytree(templates[1], tmp_path / "raw"))
    case, code, text = CORPUS[name]
    argv = case(work, raw, tmp_path)
    capsys.readouterr()
    assert main(argv) == code
    out = capsys.readouterr()
    assert text in out.out + out.err, out.out + out.err
    if code in (1, 2) and argv[0] != "verify":
        assert f"nnseg {argv[0]}: error: " in out.err  # one line naming the error class
    leftovers = [p for p in tmp_path.rglob(".*") if p.is_file() and p.suffix == ".tmp"]
    assert leftovers == []  # nothing half-written under a temporary (or final) name


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40
