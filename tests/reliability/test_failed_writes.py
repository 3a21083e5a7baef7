"""Failed writes (a file-size limit, a full disk) end with a WriteError that says so, keep nothing partial
under a final name, and a rerun completes with the bytes of an undisturbed run."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nnseg._atomic import atomic_write_bytes, write_error
from nnseg.dataset import RawDataset
from nnseg.errors import WriteError
from nnseg.io import ImageGeometry, read_image, write_image
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing import PreprocessedStore, preprocess_dataset

LIMITED = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from nnseg.errors import WriteError
    kind = sys.argv[2]
    try:
        if kind == "image":
            import numpy as np
            from nnseg.io import ImageGeometry, write_image
            rng = np.random.default_rng(0)
            write_image(rng.normal(size=(20, 30, 40)).astype(np.float32), sys.argv[3], ImageGeometry.identity((1, 1, 1)))
        else:
            from nnseg.dataset import RawDataset
            from nnseg.planning import ConfigurationPlan
            from nnseg.preprocessing import preprocess_dataset
            plan = ConfigurationPlan.from_json(json.loads(Path(sys.argv[4]).read_text()))
            preprocess_dataset(RawDataset.from_folder(sys.argv[3]), plan, sys.argv[5], progress=False)
    except WriteError as err:
        print(json.dumps({"type": type(err).__name__, "errno": err.errno, "message": str(err)}))
        sys.exit(1)
    print(json.dumps({"type": None}))
""")


def _run_limited(limit: int, *args: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", LIMITED, str(limit), *args], capture_output=True, env=env,
                          timeout=300, check=False)  # fmt: skip
    assert done.stdout, done.stderr.decode()
    return json.loads(done.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def _store_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_nifti_written_under_a_file_size_limit_is_an_error_not_a_truncated_file(tmp_path: Path) -> None:
    target = tmp_path / "pred.nii.gz"
    result = _run_limited(20_000, "image", str(target))
    assert result["type"] == "WriteError"
    assert result["errno"] == errno.EFBIG
    assert str(result["message"]).startswith(
        f"cannot write {target}: this process may write files of at most 20000 bytes (file-size limit, `ulimit -f`) "
        "(the written file does not read back: image file "
    )
    assert "nothing was kept under that name. Free space (or raise the limit) and run the same command" in str(
        result["message"]
    )
    assert list(tmp_path.iterdir()) == []  # no partial file, not even a temporary one


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_preprocessing_under_a_file_size_limit_then_rerun(tiny: tuple[RawDataset, ConfigurationPlan],
                                                          tmp_path: Path) -> None:  # fmt: skip
    dataset, plan = tiny
    reference = tmp_path / "reference"
    preprocess_dataset(dataset, plan, reference, progress=False)
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan.to_json(standalone=True)))
    store = tmp_path / "store"
    result = _run_limited(3500, "preprocess", str(dataset.root), str(plan_path), str(store))
    assert result["type"] == "PreprocessingWriteError"
    assert result["errno"] == errno.EFBIG
    assert str(result["message"]).startswith(
        f"a file-size limit (`ulimit -f`) stopped writing store {store}; raise "
        "the limit and run again. preprocessing failed for "
    )
    status = PreprocessedStore(store).status(dataset.case_ids, verify=True)
    assert status.stale == ()  # nothing half-written counts as anything
    assert not [p for p in store.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".preprocess")]
    preprocess_dataset(dataset, plan, store, progress=False)  # the limit is gone
    assert _store_bytes(store) == _store_bytes(reference)


def test_bytes_that_do_not_reach_the_disk_are_a_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.json"

    def short_write(self: Path, data: bytes) -> int:
        with open(self, "wb") as handle:
            return handle.write(data[: len(data) // 2])  # a writer that silently drops bytes

    monkeypatch.setattr(Path, "write_bytes", short_write)
    with pytest.raises(
        WriteError,
        match=rf"cannot write {target}: .*\(5 of 11 bytes reached the disk\); nothing "
        r"was kept under that name",
    ):
        atomic_write_bytes(target, b"hello world")
    assert list(tmp_path.iterdir()) == []


def test_enospc_is_a_write_error_saying_the_disk_is_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(WriteError, match=r"the disk is full \(OSError: \[Errno 28\] No space left on device\)") as info:
        atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value, OSError)
    assert list(tmp_path.iterdir()) == []


def test_write_error_without_a_known_cause(tmp_path: Path) -> None:
    error = write_error(tmp_path / "f", "boom", cause_errno=errno.EIO)
    assert str(error).startswith(f"cannot write {tmp_path / 'f'}: the write failed (boom)")
    assert error.errno == errno.EIO


def test_verified_image_write_round_trips(tmp_path: Path) -> None:
    array = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    for ending in (".nii.gz", ".nii", ".nrrd", ".mha"):
        write_image(array, tmp_path / f"x{ending}", ImageGeometry.identity((1.0, 2.0, 3.0)))
        assert np.array_equal(read_image(tmp_path / f"x{ending}")[0], array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mha", "x.nii", "x.nii.gz", "x.nrrd"]
