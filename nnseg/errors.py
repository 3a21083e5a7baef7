"""The exceptions nnseg raises on purpose.

Every error class subclasses both :class:`NnsegError` and the builtin exception a caller would naturally
catch, so ``except NnsegError`` and ``except ValueError`` both work. Messages follow one shape: what is
wrong, where (file, case id, argument), what was expected, what was found, and how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from nnseg.dataset import Problem

__all__ = [
    "EnsembleError",
    "PostprocessingError",
    "SelectionError",
    "CasesFailedError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "DatasetLayoutError",
    "EvaluationError",
    "FingerprintError",
    "ImageIOError",
    "LoaderError",
    "LockError",
    "ModelZipError",
    "NnsegError",
    "PlanningError",
    "PlansError",
    "PredictionError",
    "PredictionStopped",
    "PreprocessingError",
    "PreprocessingWriteError",
    "StoreError",
    "TrainingStopped",
    "WriteError",
    "UnknownCaseError",
]


class NnsegError(Exception):
    """Base class of every error nnseg raises on purpose."""


class ConfigError(NnsegError, ValueError):
    """An argument or configuration value is out of range or of the wrong kind."""


class ImageIOError(NnsegError, OSError):
    """An image or label file cannot be read or written."""


class DatasetError(NnsegError, ValueError):
    """The raw dataset folder, one of its files, or its dataset.json is not usable."""


class DatasetLayoutError(DatasetError):
    """The raw dataset folder breaks the layout rules; ``problems`` holds every problem found.

    Args:
        root: The dataset folder.
        problems: The errors (and the warnings found alongside them).
    """

    def __init__(self, root: Path, problems: Sequence[Problem]) -> None:
        self.root = root
        self.problems = tuple(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        lines = "\n".join(f"  - {p.message}" for p in errors)
        super().__init__(
            f"the raw dataset folder {root} has {len(errors)} layout problem(s):\n{lines}\n"
            "Fix them and open the dataset again (the nnU-Net raw layout is described in docs/dataset.md)."
        )


class UnknownCaseError(DatasetError, KeyError):
    """A case id that the dataset does not hold was looked up."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class FingerprintError(NnsegError, ValueError):
    """A fingerprint cannot be computed, loaded, or merged."""


class PlansError(NnsegError, ValueError):
    """Plans are malformed, from an unsupported schema, or lack a configuration."""


class PlanningError(NnsegError, ValueError):
    """The planner cannot produce a plan for this fingerprint and budget."""


class StoreError(NnsegError, RuntimeError):
    """A preprocessed store is missing, incomplete, or was built from other plans."""


class PreprocessingError(StoreError):
    """Some cases could not be preprocessed; the others were written.

    Args:
        message: The error message (every failed case id with its reason).
        failures: Case id -> reason.
    """

    def __init__(self, message: str, failures: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.failures = dict(failures or {})


class CheckpointError(NnsegError, RuntimeError):
    """A checkpoint cannot be read or does not match what it is loaded into."""


class LoaderError(NnsegError, RuntimeError):
    """A training or validation batch could not be produced (the message names the step and the case)."""


class ModelZipError(NnsegError, ValueError):
    """A model zip cannot be written or installed (unsafe entries, too large, damaged, incomplete)."""


class WriteError(NnsegError, OSError):
    """A file could not be written completely (disk full, file-size limit, failed device); nothing was kept.

    ``errno`` is ``ENOSPC`` (disk full), ``EFBIG`` (file-size limit) or the failing call's own value.
    """


class LockError(NnsegError, RuntimeError):
    """Another live process holds the lock of the work this process was asked to do (the message names it)."""


class PreprocessingWriteError(PreprocessingError, WriteError):
    """Preprocessing stopped because a file could not be written (disk full, file-size limit).

    The finished cases stay; no partial file is kept under a final name. ``errno`` is ``ENOSPC`` or ``EFBIG``.
    """


class PredictionError(NnsegError, RuntimeError):
    """A prediction run cannot start (bad inputs, foreign outputs) or some of its cases failed."""


class CasesFailedError(PredictionError):
    """Some cases of a part failed; the others were written.

    Args:
        message: Every failed case id with its reason.
        failures: Case id -> reason.
    """

    def __init__(self, message: str, failures: Mapping[str, str]) -> None:
        super().__init__(message)
        self.failures = dict(failures)


class PredictionStopped(PredictionError):
    """A prediction run stopped between cases on a signal; finished cases are kept, a rerun does the rest.

    Args:
        message: What stopped, and how to continue.
        signum: The signal that stopped the run.

    Attributes:
        exit_code: ``128 + signum``, the shell's convention (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class EvaluationError(NnsegError, ValueError):
    """Predictions and references cannot be paired or compared."""


class PostprocessingError(NnsegError, ValueError):
    """A postprocessing file is malformed or belongs to other labels, or its folders cannot be used."""


class EnsembleError(NnsegError, ValueError):
    """Prediction folders cannot be ensembled (different cases, classes or shapes; damaged probabilities)."""


class SelectionError(NnsegError, ValueError):
    """Cross-validation results or find-best candidates cannot be gathered (missing, unfinished or mixed folds)."""


class TrainingStopped(NnsegError, RuntimeError):
    """Training stopped at a step boundary on a signal; ``checkpoint_latest.pt`` holds that step.

    Running ``fit`` (or ``nnseg train``) on the same run folder again resumes from it, bitwise-identically to an
    uninterrupted run.

    Args:
        message: What stopped, where, and how to continue.
        signum: The signal that stopped the run.
        step: The optimiser steps done (the step the checkpoint holds).

    Attributes:
        exit_code: ``128 + signum``, the shell's convention (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, signum: int, step: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.step = step
        self.exit_code = 128 + signum
