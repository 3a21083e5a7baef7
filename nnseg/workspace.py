"""``Workspace``: the one explicit folder per dataset that replaces nnU-Net's environment variables.

Layout::

    WORK/
      workspace.json          where the raw dataset lives
      dataset.json            copy of the raw dataset's
      fingerprint.json        (+ fingerprint_cache/ while it is being computed)
      plans/<plans_name>.json
      splits_final.json       nnU-Net's cross-validation folds (nnU-Net keeps it in its preprocessed folder)
      preprocessed/<name>/
      runs/<plans_name>__<configuration>__<run_name>/fold_<k>/
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nnseg._atomic import atomic_write_json
from nnseg._jsonfile import read_json_file
from nnseg.errors import ConfigError, DatasetError

__all__ = ["Workspace"]

WORKSPACE_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Workspace:
    """Paths inside one work folder. Constructing it touches nothing on disk.

    Args:
        root: The work folder.
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def manifest_path(self) -> Path:
        """``workspace.json``."""
        return self.root / "workspace.json"

    @property
    def dataset_json_path(self) -> Path:
        """The copy of the raw ``dataset.json``."""
        return self.root / "dataset.json"

    @property
    def fingerprint_path(self) -> Path:
        """``fingerprint.json``."""
        return self.root / "fingerprint.json"

    @property
    def fingerprint_cache_dir(self) -> Path:
        """Per-case fingerprint results while extraction runs (lets a killed run continue)."""
        return self.root / "fingerprint_cache"

    @property
    def splits_path(self) -> Path:
        """``splits_final.json``: the folds every training of this dataset uses, in nnU-Net's format.

        nnU-Net keeps this file in ``nnUNet_preprocessed/<dataset>/``, the folder the work folder stands for:
        copying it between the two gives both tools the same folds.
        """
        return self.root / "splits_final.json"

    def plans_path(self, plans_name: str) -> Path:
        """``plans/<plans_name>.json``.

        Raises:
            ConfigError: ``plans_name`` is not a plain file name (it would point outside ``plans/``).
        """
        return self.root / "plans" / f"{_component(plans_name, 'plans name')}.json"

    def preprocessed_dir(self, name: str) -> Path:
        """``preprocessed/<name>/``.

        Raises:
            ConfigError: ``name`` is not a plain folder name.
        """
        return self.root / "preprocessed" / _component(name, "preprocessed store name")

    def run_dir(self, plans_name: str, configuration: str, run_name: str, fold: int | str) -> Path:
        """``runs/<plans_name>__<configuration>__<run_name>/fold_<fold>/``.

        Raises:
            ConfigError: one of the parts is not a plain name (it would point outside ``runs/``).
        """
        parts = [_component(value, what) for value, what in
                 ((plans_name, "plans name"), (configuration, "configuration"), (run_name, "run name"))]  # fmt: skip
        return self.root / "runs" / "__".join(parts) / f"fold_{_component(str(fold), 'fold')}"

    def raw_dataset_dir(self) -> Path:
        """The raw dataset folder recorded in ``workspace.json``.

        Raises:
            DatasetError: If the workspace has not been initialised or its ``workspace.json`` is damaged.
        """
        data = read_json_file(self.manifest_path, DatasetError, (
            f"{self.root} is not an nnseg work folder: {self.manifest_path} is missing. "
            f"Create it with `nnseg fingerprint RAW_DIR -o {self.root}`."
        ))  # fmt: skip
        raw = data.get("raw_dataset") if isinstance(data, dict) else None
        if not isinstance(raw, str) or not raw:
            raise DatasetError(
                f"{self.manifest_path} has no 'raw_dataset' entry (got {data!r}); expected {{\"format_version\": "
                f'{WORKSPACE_FORMAT_VERSION}, "raw_dataset": "/path/to/raw/DatasetXXX_Name"}}. Fix the file, or '
                "remove it and run `nnseg fingerprint RAW_DIR -o WORK` again."
            )
        return Path(raw)

    def initialise(self, raw_dataset_dir: str | os.PathLike[str]) -> None:
        """Create the folder and record the raw dataset it belongs to.

        Raises:
            DatasetError: If the folder already belongs to another raw dataset.
        """
        raw = Path(raw_dataset_dir).resolve()
        if self.manifest_path.is_file():
            existing = self.raw_dataset_dir()
            if existing != raw:
                raise DatasetError(
                    f"work folder {self.root} belongs to raw dataset {existing}, not {raw}; "
                    "use one work folder per dataset (pick another -o folder)."
                )
            return
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.manifest_path, {"format_version": WORKSPACE_FORMAT_VERSION, "raw_dataset": str(raw)})


def _component(value: str, what: str) -> str:
    """``value`` if it is one plain path component; a ConfigError otherwise."""
    if not isinstance(value, str) or not value or value in (".", "..") or any(c in value for c in "/\\\0"):
        raise ConfigError(
            f"Workspace: the {what} must be a plain name without path separators; got {value!r}. "
            "Use letters, digits, '.', '_' and '-', e.g. 'nnUNetPlans' or 'run1'."
        )
    return value
