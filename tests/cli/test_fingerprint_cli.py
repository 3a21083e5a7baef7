"""``nnseg fingerprint RAW_DIR -o WORK``: happy path, --status, parts then assemble, user errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nnseg.cli import main as cli
from nnseg.dataset import DatasetSpec, RawDataset
from nnseg.fingerprint import Fingerprint, extract_fingerprint
from nnseg.testing import make_synthetic_dataset

NUM_SAMPLES = 200


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four tiny CT-like cases (read-only)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("raw"), num_cases=4, shape=(8, 12, 12), seed=5)


@pytest.fixture(scope="module")
def expected(raw: Path) -> Fingerprint:
    """The fingerprint computed through the Python API."""
    return extract_fingerprint(RawDataset.from_folder(raw), num_samples=NUM_SAMPLES)


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv] + ["--num-samples", str(NUM_SAMPLES)])
    out, err = capsys.readouterr()
    return code, out, err


def test_happy_path_writes_the_three_files(
    raw: Path, expected: Fingerprint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    code, out, _ = _run(capsys, "fingerprint", raw, "-o", work)
    assert code == 0
    assert json.loads((work / "workspace.json").read_text())["raw_dataset"] == str(raw.resolve())
    assert DatasetSpec.load(work / "dataset.json") == RawDataset.from_folder(raw).spec
    assert Fingerprint.load(work / "fingerprint.json") == expected
    assert not (work / "fingerprint_cache").exists()  # removed once the fingerprint is written
    assert f"fingerprint of 4 case(s) written to {work / 'fingerprint.json'}" in out
    assert f"next: nnseg plan {work}" in out
    code, out, _ = _run(capsys, "fingerprint", raw, "-o", work)
    assert code == 0
    assert "already holds the fingerprint of these 4 case(s); pass --clean to recompute it" in out
    code, out, _ = _run(capsys, "fingerprint", raw, "-o", work, "--clean", "--keep-cache", "--num-workers", "1")
    assert code == 0
    assert Fingerprint.load(work / "fingerprint.json") == expected
    assert (work / "fingerprint_cache" / "cache.json").is_file()


def test_parts_then_assemble_with_status(
    raw: Path, expected: Fingerprint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    code, out, _ = _run(capsys, "fingerprint", raw, "-o", work, "--status")
    assert (code, out) == (1, f"0 of 4 case(s) cached in {work / 'fingerprint_cache'}\n"
                              "missing: case_000, case_001, case_002, case_003\n")  # fmt: skip
    code, out, _ = _run(capsys, "fingerprint", raw, "-o", work, "--num-parts", "2", "--part-id", "1")
    assert code == 0
    assert "part 1 of 2 done; when every part is done, run this command again" in out
    assert not (work / "fingerprint.json").exists()
    code, out, _ = _run(capsys, "fingerprint", raw, "-o", work, "--status")
    assert out.splitlines() == [f"2 of 4 case(s) cached in {work / 'fingerprint_cache'}", "missing: case_000, case_002"]
    assert code == 1
    code, out, _ = _run(capsys, "fingerprint", raw, "-o", work, "--status", "--num-parts", "2", "--part-id", "1")
    assert out.splitlines()[1:] == []
    assert code == 0  # part 1 is complete
    code, out, _ = _run(capsys, "fingerprint", raw, "-o", work, "--num-parts", "2", "--part-id", "0")
    code, out, _ = _run(capsys, "fingerprint", raw, "-o", work, "--status")
    assert out.splitlines()[1].startswith("every case is cached; run without --status")
    assert code == 0
    code, out, _ = _run(capsys, "fingerprint", raw, "-o", work)
    assert code == 0
    assert Fingerprint.load(work / "fingerprint.json") == expected
    code, out, _ = _run(capsys, "fingerprint", raw, "-o", work, "--status")
    assert out == f"done: {work / 'fingerprint.json'} holds the fingerprint of all 4 case(s)\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num-parts", "2", "--part-id", "2"], r"ConfigError: Shard: index must be an integer in \[0, 1\]; got 2"),
        (
            ["--num-workers", "0"],
            r"ConfigError: nnseg fingerprint: --num-workers must be an integer >= 1; got 0\. Set --num-workers=1 or more",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "fingerprint", raw, "-o", tmp_path / "work", *extra)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("nnseg fingerprint: error: ")
    assert re.search(message, err)


def test_missing_raw_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "fingerprint", tmp_path / "nowhere", "-o", tmp_path / "work")
    assert code == 2
    assert err.startswith(
        f"nnseg fingerprint: error: DatasetLayoutError: the raw dataset folder {tmp_path / 'nowhere'}"
    )
    assert not (tmp_path / "work").exists()


def test_no_foreground_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=2, shape=(8, 8, 8), num_classes=2)
    for label in (folder / "labelsTr").iterdir():  # an empty label map in every case
        from nnseg.io import read_segmentation, write_segmentation

        seg, geometry = read_segmentation(label)
        write_segmentation(seg * 0, label, geometry)
    code, _, err = _run(capsys, "fingerprint", folder, "-o", tmp_path / "work")
    assert code == 2
    assert err.count("\n") == 1
    assert "FingerprintError: no foreground: none of the 2 training case(s)" in err


def test_constant_channel_is_one_warning_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nnseg.io import read_image, write_image

    folder = make_synthetic_dataset(tmp_path, num_cases=2, shape=(8, 8, 8), num_channels=2, modality="mr")
    for image in (folder / "imagesTr").glob("*_0001.nii.gz"):  # the second channel holds 7 everywhere
        data, geometry = read_image(image)
        write_image(data * 0 + 7, image, geometry)
    code, out, err = _run(capsys, "fingerprint", folder, "-o", tmp_path / "work")
    assert code == 0
    assert err.count("\n") == 1
    assert err.startswith("nnseg fingerprint: warning: channel 1 (")
    assert "has the same foreground intensity 7 in every sampled voxel (std 0)" in err
    assert "fingerprint of 2 case(s) written" in out
