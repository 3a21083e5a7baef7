"""Keep names dropped from a package's ``__all__`` importable for a while, with a ``DeprecationWarning``.

A package ``__init__`` lists in ``__all__`` only what users call; a name that used to be exported there stays
importable through a module-level ``__getattr__`` (PEP 562) that warns and says where the name lives now::

    # nnseg/evaluation/__init__.py
    __getattr__ = moved_names(__name__, {"label_key": "nnseg.evaluation._metrics"})

``from nnseg.evaluation import label_key`` then works, warns once per call site, and returns the object
from ``nnseg.evaluation._metrics``. Any other unknown name raises the usual ``AttributeError``.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names"]


def moved_names(package: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` resolving ``moved`` names with a ``DeprecationWarning``.

    Args:
        package: The module the ``__getattr__`` is installed in (pass ``__name__``).
        moved: Old public name -> the module that defines it now (it must hold the same name).

    Returns:
        A function to assign to the module's ``__getattr__``.

    Example:
        >>> __getattr__ = moved_names(__name__, {"store_fields": "nnseg.preprocessing._store"})
    """
    table = dict(moved)

    def __getattr__(name: str) -> Any:
        home = table.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        if sys._getframe(1).f_code.co_name == "_handle_fromlist":
            return value  # importlib's hasattr probe before `from package import name`: warn once, at the import
        warnings.warn(
            f"{package}.{name} is no longer part of {package}'s public API; import it from {home} instead "
            f"(`from {home} import {name}`). The old import will be removed in a future version.",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__
