"""Reading the JSON files nnseg's products are saved as, with one error style for every product."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnseg.errors import NnsegError

__all__ = ["read_json_file"]


def read_json_file(path: Path, error: type[NnsegError], missing: str) -> Any:
    """Parse the JSON file ``path``.

    Args:
        path: The file.
        error: The error class of the product being loaded (``PlansError``, ``FingerprintError``...).
        missing: The whole message for a file that does not exist (what it is and how to make one).

    Raises:
        error: If the file does not exist or is not valid JSON (naming the line and column).
    """
    if not path.is_file():
        raise error(missing)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise error(f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}).") from err
