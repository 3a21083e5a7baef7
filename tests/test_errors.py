"""The error family: every nnseg error is also the builtin a caller would catch."""

from __future__ import annotations

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
}


@pytest.mark.parametrize(("name", "builtin"), sorted(BUILTIN_OF.items()))
def test_error_subclasses_nnseg_error_and_builtin(name: str, builtin: type[Exception]) -> None:
    cls = getattr(errors, name)
    with pytest.raises(errors.NnsegError, match="boom"):
        raise cls("boom")
    with pytest.raises(builtin):
        raise cls("boom")


def test_all_lists_every_error() -> None:
    assert set(errors.__all__) == set(BUILTIN_OF) | {"NnsegError"}
