"""Names dropped from a package's ``__all__`` stay importable, with a DeprecationWarning naming their new home."""

from __future__ import annotations

import importlib
import types
import warnings

import pytest

from nnseg._deprecation import moved_names

# package -> names that left its __all__ -> where they live now
MOVED = {
    "nnseg.dataset": {"LabelValue": "nnseg.dataset._spec"},
    "nnseg.evaluation": {"EvaluationError": "nnseg.errors", "label_key": "nnseg.evaluation._metrics",
                         "region_metrics": "nnseg.evaluation._metrics", "CaseEvaluation": "nnseg.evaluation._summary"},
    "nnseg.fingerprint": {"DEFAULT_SEED": "nnseg.fingerprint._extract", "default_num_samples": "nnseg.fingerprint._extract"},
    "nnseg.preprocessing": {"PreprocessingError": "nnseg.errors", "store_fields": "nnseg.preprocessing._store",
                            "nonzero_mask": "nnseg._cropping"},
}  # fmt: skip
CASES = [(package, name, home) for package, names in MOVED.items() for name, home in names.items()]


@pytest.mark.parametrize(("package", "name", "home"), CASES)
def test_moved_name_warns_and_resolves_to_the_same_object(package: str, name: str, home: str) -> None:
    module = importlib.import_module(package)
    assert name not in module.__all__
    with pytest.warns(DeprecationWarning, match=rf"{package}\.{name} is no longer part of .*import it from {home}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(home), name)


def test_from_import_warns_at_the_importing_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from nnseg.preprocessing import store_fields  # noqa: F401
    assert [w.category for w in caught] == [DeprecationWarning]
    assert caught[0].filename == __file__


@pytest.mark.parametrize("package", sorted(MOVED))
def test_public_names_do_not_warn(package: str) -> None:
    module = importlib.import_module(package)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in module.__all__:
            assert getattr(module, name) is not None


def test_unknown_names_still_raise_attribute_error() -> None:
    module = types.ModuleType("demo")
    module.__getattr__ = moved_names("demo", {"old": "nnseg.errors"})  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="module 'demo' has no attribute 'missing'"):
        module.missing  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'Trainerr'"):
        importlib.import_module("nnseg.evaluation").Trainerr  # noqa: B018


def test_training_internals_moved_out_of_the_package_still_import() -> None:
    import nnseg.training
    from nnseg.training._sampling import patch_bounds

    with pytest.warns(DeprecationWarning, match=r"nnseg\.training\.patch_bounds .*nnseg\.training\._sampling"):
        assert nnseg.training.patch_bounds is patch_bounds
    assert "patch_bounds" not in nnseg.training.__all__
