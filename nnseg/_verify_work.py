"""``verify_work(WORK)``: check a whole work folder and say which command repairs each damaged item.

Checked: ``workspace.json``, ``dataset.json``, ``fingerprint.json``, every ``plans/*.json``, every store under
``preprocessed/`` (``status(verify=True)``: every file against its marker's SHA-256), every run folder under
``runs/`` (``run.json``, every checkpoint loads safely, the validation summary of a finished run), every
``crossval_results_folds_*`` folder (its ``summary.json``) and every prediction folder under WORK (its part
manifests and the checksums of its outputs). Nothing is changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnseg.errors import ConfigError, NnsegError
from nnseg.workspace import Workspace

__all__ = ["Damage", "WorkReport", "is_work_folder", "verify_work"]


@dataclass(frozen=True)
class Damage:
    """One damaged or incomplete item of a work folder.

    Args:
        path: The file or folder.
        problem: What is wrong.
        repair: The command (or step) that repairs it, or finishes it.
        incomplete: True for work that is merely unfinished (an interrupted prediction run): nothing written is
            wrong, the same command finishes it.
    """

    path: Path
    problem: str
    repair: str
    incomplete: bool = False

    def line(self) -> str:
        """``"DAMAGED path: problem -> repair: command"`` (``"INCOMPLETE path: problem -> finish: command"``)."""
        if self.incomplete:
            return f"INCOMPLETE {self.path}: {self.problem} -> finish: {self.repair}"
        return f"DAMAGED {self.path}: {self.problem} -> repair: {self.repair}"


@dataclass(frozen=True)
class WorkReport:
    """What :func:`verify_work` found.

    Args:
        root: The work folder.
        checked: Every item checked (files and folders).
        damaged: The damaged or incomplete ones, with their repair (:attr:`Damage.incomplete` tells which).
    """

    root: Path
    checked: tuple[Path, ...]
    damaged: tuple[Damage, ...]

    @property
    def ok(self) -> bool:
        """Whether nothing is damaged (unfinished work is not damage)."""
        return all(d.incomplete for d in self.damaged)

    @property
    def incomplete(self) -> tuple[Damage, ...]:
        """The unfinished items (an interrupted prediction run), each with the command that finishes it."""
        return tuple(d for d in self.damaged if d.incomplete)

    def format(self) -> str:
        """One line per damaged or unfinished item, then a summary line."""
        broken = len(self.damaged) - len(self.incomplete)
        verdict = "OK" if self.ok else f"{broken} damaged item(s)"
        if self.incomplete:
            verdict += f", {len(self.incomplete)} unfinished item(s)"
        lines = [d.line() for d in self.damaged]
        return "\n".join([*lines, f"{self.root}: {len(self.checked)} item(s) checked, {verdict}"])


def is_work_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a ``workspace.json`` (an nnseg work folder)."""
    return Workspace(path).manifest_path.is_file()


def verify_work(root: str | os.PathLike[str]) -> WorkReport:
    """Check every artifact of the work folder ``root`` (reads everything, changes nothing).

    Raises:
        ConfigError: If ``root`` is not a work folder (no ``workspace.json``).
    """
    work = Workspace(root)
    if not work.manifest_path.is_file():
        raise ConfigError(
            f"{work.root} is not an nnseg work folder (no workspace.json); `nnseg verify` takes a work folder, or a "
            "raw dataset folder (dataset.json + imagesTr/)."
        )
    checker = _Checker(work)
    checker.files()
    checker.stores()
    checker.runs()
    checker.predictions()
    return WorkReport(work.root, tuple(checker.checked), tuple(checker.damaged))


class _Checker:
    def __init__(self, work: Workspace) -> None:
        self.work, self.root = work, work.root
        self.checked: list[Path] = []
        self.damaged: list[Damage] = []

    def check(self, path: Path, load: Callable[[], Any], repair: str) -> Any:
        """``load()``'s result, or None with ``path`` recorded as damaged (the error's message is the problem)."""
        self.checked.append(path)
        try:
            return load()
        except (NnsegError, OSError, ValueError, KeyError, TypeError) as err:
            self.damaged.append(Damage(path, f"{type(err).__name__}: {err}", repair))
            return None

    def files(self) -> None:
        from nnseg.dataset import DatasetSpec
        from nnseg.fingerprint import Fingerprint
        from nnseg.planning import Plans

        refingerprint = f"nnseg fingerprint RAW_DIR -o {self.root}"
        self.check(self.work.manifest_path, self.work.raw_dataset_dir, f"fix workspace.json, or {refingerprint}")
        if self.work.dataset_json_path.exists():
            self.check(self.work.dataset_json_path, lambda: DatasetSpec.load(self.work.dataset_json_path),
                       f"copy the raw dataset's dataset.json over it, or {refingerprint}")  # fmt: skip
        if self.work.fingerprint_path.exists():
            self.check(self.work.fingerprint_path, lambda: Fingerprint.load(self.work.fingerprint_path), refingerprint)
        for path in sorted((self.root / "plans").glob("*.json")):
            self.check(path, lambda p=path: Plans.load(p), f"nnseg plan {self.root} --name {path.stem}")  # type: ignore[misc]

    def stores(self) -> None:
        from nnseg.preprocessing import PreprocessedStore

        for folder in sorted(p for p in (self.root / "preprocessed").glob("*") if p.is_dir()):
            store = PreprocessedStore(folder)
            manifest = self.check(folder / "store.json", store.manifest, f"delete {folder} and preprocess again")
            if manifest is None:
                continue
            repair = f"nnseg preprocess {self.root} -c {manifest.configuration} --plans {manifest.plans_name}"
            status = self.check(folder, lambda s=store: s.status(verify=True), repair)  # type: ignore[misc]
            if status is not None and status.stale:
                self.damaged.append(Damage(folder, f"stale or damaged case(s): {', '.join(status.stale)}", repair))

    def runs(self) -> None:
        for run_root in sorted(p for p in (self.root / "runs").glob("*") if p.is_dir()):
            plans, _, rest = run_root.name.partition("__")
            configuration, _, run_name = rest.partition("__")
            for fold in sorted(p for p in run_root.glob("fold_*") if p.is_dir()):
                train = (f"nnseg train {self.root} -c {configuration} -f {fold.name[5:]} --plans {plans} "
                         f"--run-name {run_name}")  # fmt: skip
                self.run_folder(fold, train)
            for crossval in sorted(run_root.glob("crossval_results_folds_*")):
                self.checked.append(crossval)
                if not (crossval / "summary.json").is_file():
                    folds = " ".join(crossval.name.removeprefix("crossval_results_folds_").split("_"))
                    self.damaged.append(Damage(crossval, "summary.json is missing",
                                               f"nnseg crossval {run_root} -f {folds}"))  # fmt: skip

    def run_folder(self, fold: Path, train: str) -> None:
        from nnseg.checkpoint import Checkpoint

        description = self.check(fold / "run.json", lambda: json.loads((fold / "run.json").read_text()),
                                 f"delete it and run `{train}` (it is rewritten from the checkpoint's run)")  # fmt: skip
        for path in sorted(fold.glob("checkpoint_*.pt")):
            repair = (f"delete it and run `{train}`" if path.name != "checkpoint_final.pt" else
                      f"delete it (the run continues from checkpoint_latest.pt if present, else from the start): "
                      f"`{train}`")  # fmt: skip
            self.check(path, lambda p=path: Checkpoint.load(p), repair)  # type: ignore[misc]
        config = description.get("config") if isinstance(description, dict) else None
        validates = not isinstance(config, dict) or config.get("final_validation", True)
        if (fold / "checkpoint_final.pt").is_file() and validates:
            summary = fold / "validation" / "summary_preprocessed.json"
            self.checked.append(summary)
            if not summary.is_file():
                self.damaged.append(Damage(summary, "the finished run has no validation summary",
                                           f"{train} --val-only"))  # fmt: skip

    def predictions(self) -> None:
        from nnseg.inference import prediction_status

        skip = (self.root / "preprocessed", self.root / "fingerprint_cache")
        for parts in sorted(self.root.rglob("nnseg_parts")):
            folder = parts.parent
            if any(folder.is_relative_to(s) for s in skip):
                continue
            repair = f"run the same `nnseg predict ... -o {folder}` again (`nnseg predict --status -o {folder}`)"
            status = self.check(folder, lambda f=folder: prediction_status(f), repair)  # type: ignore[misc]
            if status is None:
                continue
            redo = sorted(c for p in status.parts for c in p.redo)
            if redo:
                self.damaged.append(Damage(folder, f"outputs damaged or not written by this run: {', '.join(redo)}",
                                           repair))  # fmt: skip
            elif not status.is_complete:
                finish = f"run the same `nnseg predict ... -o {folder}` again (it predicts the missing cases only)"
                self.damaged.append(Damage(folder, f"{len(status.missing)} case(s) not predicted yet", finish, True))
