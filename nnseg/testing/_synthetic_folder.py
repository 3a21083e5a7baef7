"""The output folder of the synthetic generator: refuse to mix datasets, clear images on ``overwrite``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError
from nnseg.io import SUPPORTED_ENDINGS

__all__ = ["IMAGE_FOLDERS", "prepare_folder"]

IMAGE_FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")
CALLER = "make_synthetic_dataset"
PNG = ".png"


def prepare_folder(folder: Path, spec: DatasetSpec, expected: set[str], *, overwrite: bool) -> None:
    """Refuse to write into a folder that holds another dataset unless ``overwrite`` (then remove its images).

    Raises:
        ConfigError: If ``folder`` is a file, or holds a different dataset.json or files this call would not write.
    """
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{CALLER}: {folder} exists and is not a folder; choose another out_dir or dataset_name.")
    if overwrite:
        _remove_image_files(folder)
        return
    if not folder.is_dir():
        return
    existing = {
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
    }
    reason = ""
    if "dataset.json" in existing and _read_json(folder / "dataset.json") != json.loads(json.dumps(spec.to_dict())):
        reason = "its dataset.json differs from the one this call would write"
    elif existing - expected - {"dataset.json"}:
        extra = sorted(existing - expected - {"dataset.json"})
        reason = f"it contains {len(extra)} file(s) this call would not write, e.g. {extra[0]!r}"
    if reason:
        raise ConfigError(
            f"{CALLER}: {folder} already holds a different dataset ({reason}); refusing to overwrite it. "
            "Pass overwrite=True (CLI: --overwrite) to replace its image and label files, or choose another "
            "out_dir or dataset_name."
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _remove_image_files(folder: Path) -> None:
    for name in IMAGE_FOLDERS:
        sub = folder / name
        if not sub.is_dir():
            continue
        for path in sub.iterdir():
            if path.is_file() and path.name.endswith((*SUPPORTED_ENDINGS, PNG)):
                path.unlink()
