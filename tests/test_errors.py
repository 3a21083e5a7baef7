"""The error family: every nnseg error is also the builtin a caller would catch."""

from __future__ import annotations

import inspect

import pytest

from nnseg import errors

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
        name for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, errors.NnsegError) and obj.__module__ == errors.__name__
    }
    assert set(errors.__all__) == defined
    assert defined == set(BUILTIN_OF) | {"NnsegError"}


def test_every_subclass_also_subclasses_a_builtin() -> None:
    for name in set(errors.__all__) - {"NnsegError"}:
        bases = getattr(errors, name).__mro__
        assert any(b.__module__ == "builtins" and b not in (Exception, BaseException, object) for b in bases), name
