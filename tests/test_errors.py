"""The error family: every nnseg error is also the builtin a caller would catch."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import nnseg
from nnseg import errors
from nnseg.dataset import Problem

BUILTIN_OF = {
    "ConfigError": ValueError,
    "ImageIOError": OSError,
    "DatasetError": ValueError,
    "FingerprintError": ValueError,
    "PlansError": ValueError,
    "PlanningError": ValueError,
    "StoreError": RuntimeError,
    "CheckpointError": RuntimeError,
    "LoaderError": RuntimeError,
    "WriteError": OSError,
    "LockError": RuntimeError,
    "ModelZipError": ValueError,
    "EvaluationError": ValueError,
    "PredictionError": RuntimeError,
    "UnknownCaseError": KeyError,
    "PreprocessingWriteError": OSError,
    "PostprocessingError": ValueError,
    "EnsembleError": ValueError,
    "SelectionError": ValueError,
}


@pytest.mark.parametrize(("name", "builtin"), sorted(BUILTIN_OF.items()))
def test_error_subclasses_nnseg_error_and_builtin(name: str, builtin: type[Exception]) -> None:
    cls = getattr(errors, name)
    with pytest.raises(errors.NnsegError, match="boom"):
        raise cls("boom")
    with pytest.raises(builtin):
        raise cls("boom")


def test_all_lists_every_error() -> None:
    defined = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, errors.NnsegError) and obj.__module__ == errors.__name__
    }
    assert set(errors.__all__) == defined
    assert defined == set(BUILTIN_OF) | {
        "NnsegError",
        "PreprocessingError",
        "CasesFailedError",
        "DatasetLayoutError",
        "PredictionStopped",
        "TrainingStopped",
    }


def test_no_error_class_is_defined_outside_errors_py() -> None:
    """Every error class lives in nnseg/errors.py; other modules import it (and may re-export it)."""
    root = Path(nnseg.__file__).parent
    offenders = [
        f"{path.relative_to(root.parent)}:{number}"
        for path in sorted(root.rglob("*.py"))
        if path.name != "errors.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.startswith("class ") and "Error" in line.split("(")[0]
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("nnseg.evaluation._folder", "EvaluationError"),
        ("nnseg.inference._parts", "PredictionError"),
        ("nnseg.inference._parts", "CasesFailedError"),
        ("nnseg.preprocessing._run", "PreprocessingError"),
        ("nnseg.dataset._raw", "DatasetLayoutError"),
        ("nnseg.dataset._raw", "UnknownCaseError"),
        ("nnseg.training._batches", "LoaderError"),
    ],
)
def test_old_homes_still_import_the_same_class(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_errors_with_failures_keep_them() -> None:
    for cls, builtin in ((errors.PreprocessingError, RuntimeError), (errors.CasesFailedError, RuntimeError)):
        with pytest.raises(builtin, match="2 case") as info:
            raise cls("2 case(s) failed", {"a": "bad", "b": "worse"})
        assert info.value.failures == {"a": "bad", "b": "worse"}  # type: ignore[attr-defined]
    assert issubclass(errors.CasesFailedError, errors.PredictionError)
    assert issubclass(errors.PreprocessingError, errors.StoreError)


def test_dataset_layout_error_lists_the_errors_only(tmp_path: Path) -> None:
    problems = [Problem(None, None, "error", "imagesTr is missing"), Problem(None, None, "warning", "an odd file")]
    with pytest.raises(
        errors.DatasetLayoutError, match=r"has 1 layout problem\(s\):\n  - imagesTr is missing\nFix"
    ) as info:
        raise errors.DatasetLayoutError(tmp_path, problems)
    assert info.value.problems == tuple(problems)
    assert isinstance(info.value, errors.DatasetError)
    assert isinstance(info.value, ValueError)


def test_every_subclass_also_subclasses_a_builtin() -> None:
    for name in set(errors.__all__) - {"NnsegError"}:
        bases = getattr(errors, name).__mro__
        assert any(b.__module__ == "builtins" and b not in (Exception, BaseException, object) for b in bases), name
