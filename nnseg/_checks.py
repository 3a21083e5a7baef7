"""``parse_*`` validators: one wording for every checked option in nnseg.

Every settings object (``TrainerConfig``, ``InferenceSettings``, planner and loader options...) checks its
values through these helpers, so a bad value always reads the same way::

    TrainerConfig: num_epochs must be an integer >= 1; got 0. Set num_epochs=1 or more.

Each helper returns the parsed value, so a caller writes ``self.x = parse_int(...)`` or just calls it for
the check. They raise :class:`~nnseg.errors.ConfigError` (a ``ValueError``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, TypeVar

from nnseg._suggest import unknown_name_hint
from nnseg.errors import ConfigError

__all__ = ["parse_bool", "parse_choice", "parse_device", "parse_int", "parse_number", "parse_optional_bool"]

T = TypeVar("T")


def _fail(owner: str, name: str, rule: str, value: Any, fix: str) -> ConfigError:
    return ConfigError(f"{owner}: {name} must be {rule}; got {value!r}. {fix}")


def parse_int(owner: str, name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Check that ``value`` is an integer (not a bool; NumPy integers count) in ``[minimum, maximum]``.

    Args:
        owner: Who owns the option, as messages name it (``"TrainerConfig"``).
        name: The option's name.
        value: The value given.
        minimum: Smallest allowed value (None: no bound).
        maximum: Largest allowed value (None: no bound).

    Returns:
        ``value`` as an ``int``.

    Raises:
        ConfigError: ``"<owner>: <name> must be an integer >= <minimum>; got <value>. ..."``.
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)  # NumPy integers too
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if ok:
        return int(value)
    if minimum is not None and maximum is not None:
        rule, fix = f"an integer in [{minimum}, {maximum}]", f"Choose {name} between {minimum} and {maximum}."
    elif minimum is not None:
        rule, fix = f"an integer >= {minimum}", f"Set {name}={minimum} or more."
    elif maximum is not None:
        rule, fix = f"an integer <= {maximum}", f"Set {name}={maximum} or less."
    else:
        rule, fix = "an integer", f"Pass a whole number for {name}."
    raise _fail(owner, name, rule, value, fix)


def parse_number(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    default: Any = None,
) -> float:
    """Check that ``value`` is a finite real number in the interval ``low .. high``.

    Args:
        owner: Who owns the option, as messages name it.
        name: The option's name.
        value: The value given.
        low: Lower bound.
        high: Upper bound (``inf``: none).
        low_open: Whether ``low`` itself is excluded.
        high_open: Whether ``high`` itself is excluded.
        default: The option's default, named in the fix when given.

    Returns:
        ``value`` as a ``float``.

    Raises:
        ConfigError: ``"<owner>: <name> must be a number in [low, high]; got <value>. ..."``.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)  # NumPy too
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if ok:
        return float(value)
    left = "(" if low_open or low == -math.inf else "["
    right = ")" if high_open or high == math.inf else "]"
    fix = (
        "Choose a value in that range."
        if default is None
        else (f"Leave it at its default ({default!r}) or choose a value in that range.")
    )
    raise _fail(owner, name, f"a number in {left}{low:g}, {high:g}{right}", value, fix)


def parse_bool(owner: str, name: str, value: Any) -> bool:
    """Check that ``value`` is ``True`` or ``False`` (not 0/1 or a string).

    Raises:
        ConfigError: ``"<owner>: <name> must be True or False; got <value>. ..."``.
    """
    if isinstance(value, bool):
        return value
    raise _fail(owner, name, "True or False", value, f"Pass {name}=True or {name}=False.")


def parse_optional_bool(owner: str, name: str, value: Any) -> bool | None:
    """Check that ``value`` is ``True``, ``False`` or ``None`` (automatic).

    Raises:
        ConfigError: ``"<owner>: <name> must be True, False or None (auto); got <value>. ..."``.
    """
    if value is None or isinstance(value, bool):
        return value
    raise _fail(owner, name, "True, False or None (auto)", value, f"Pass {name}=True, False or None.")


def parse_choice(owner: str, name: str, value: Any, choices: Iterable[T]) -> T:
    """Check that ``value`` is one of ``choices`` (with a "did you mean" hint for a near miss).

    Raises:
        ConfigError: ``"<owner>: <name> must be one of 'a', 'b'; got 'x'. Did you mean ...?"``.
    """
    options = list(choices)
    if value in options:
        return value  # type: ignore[no-any-return]
    listed = ", ".join(repr(option) for option in options)
    hint = unknown_name_hint(value, [str(o) for o in options]) if isinstance(value, str) else ""
    raise _fail(owner, name, f"one of {listed}", value, hint or f"Choose one of {listed}.")


def parse_device(owner: str, name: str, value: Any) -> str:
    """Check that ``value`` names a torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``).

    Only the name is checked, not whether this machine has the device.

    Returns:
        The device's canonical name (``str(torch.device(value))``).

    Raises:
        ConfigError: ``"<owner>: <name> must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; got ..."``.
    """
    import torch  # the base layer imports torch only when a device is checked

    try:
        if isinstance(value, bool) or not isinstance(value, str | torch.device):
            raise TypeError(value)
        return str(torch.device(value))
    except (RuntimeError, TypeError, ValueError):
        raise _fail(owner, name, "a torch device such as 'cpu', 'cuda' or 'cuda:1'", value,
                    f"Pass {name}='cpu' or the name of a device torch knows.") from None  # fmt: skip
