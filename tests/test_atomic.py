"""Atomic writes leave either the old file or the complete new one."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from nnseg._atomic import atomic_write, atomic_write_json


def test_json_written_and_parent_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.json"
    atomic_write_json(target, {"x": [1, 2]})
    assert json.loads(target.read_text()) == {"x": [1, 2]}
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "c.json"
    atomic_write_json(target, {"old": True})

    def explode(tmp: Path) -> None:
        tmp.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, explode)
    assert json.loads(target.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


def test_written_files_get_the_mode_open_would_give(tmp_path: Path) -> None:
    probe = tmp_path / "probe.txt"
    probe.write_text("x")  # created by open(): the process's umask applies
    target = tmp_path / "atomic.json"
    atomic_write_json(target, {"a": 1})
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(probe.stat().st_mode)
