"""``nnseg report``: a folder that is not a run exits 2 with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnseg.cli import main as cli


def test_report_on_a_plain_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nnseg report: error: ConfigError: report: {tmp_path} is not a run folder (no run.json)")
    assert not (tmp_path / "r.html").exists()
