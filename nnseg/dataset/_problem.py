"""``Problem``: one finding of the layout scan or the integrity check (its own module so both can use it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nnseg._checks import parse_choice

__all__ = ["Problem", "Severity"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a raw dataset.

    Args:
        case_id: The case it concerns, or None for a dataset-wide problem (e.g. ``dataset.json``).
        path: The file or folder it concerns, or None.
        severity: ``"error"`` (the dataset cannot be used as is) or ``"warning"`` (suspicious but usable).
        message: What is wrong, naming the case and the file, what was expected and what was found.
    """

    case_id: str | None
    path: Path | None
    severity: Severity
    message: str

    def __post_init__(self) -> None:
        parse_choice("Problem", "severity", self.severity, ("error", "warning"))

    def format(self) -> str:
        """Return the problem as one line: ``ERROR: <message>`` or ``WARNING: <message>``."""
        return f"{self.severity.upper()}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "case_id": self.case_id,
            "path": None if self.path is None else str(self.path),
            "severity": self.severity,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Problem:
        """Rebuild a problem from :meth:`to_json` output."""
        path = data.get("path")
        return cls(data.get("case_id"), None if path is None else Path(path), data["severity"], data["message"])
