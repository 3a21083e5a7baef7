"""The full integrity check of a raw dataset: read every file of every case and report every problem.

The per-case core :func:`verify_case` is pure apart from reading the case's files; :func:`verify_dataset`
maps it over all cases (optionally in worker processes) and collects one :class:`VerificationReport`.

Tolerances: spacings agree when ``numpy.allclose(a, b, rtol=1e-5, atol=1e-8)`` (numpy's defaults, as
nnU-Net uses); origins when they differ by at most ``1e-4`` mm plus ``1e-5`` relative; direction cosines
when they differ by at most ``1e-5``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnseg._atomic import atomic_write_json
from nnseg._checks import parse_int
from nnseg.dataset._case import Case, channel_count_message, is_colour_format
from nnseg.dataset._problem import Problem, Severity
from nnseg.errors import DatasetError, ImageIOError
from nnseg.io import ImageGeometry, read_image, read_images

if TYPE_CHECKING:
    from nnseg.dataset._raw import RawDataset

__all__ = ["VerificationReport", "verify_case", "verify_cases", "verify_dataset"]

SPACING_RTOL = 1e-5
SPACING_ATOL = 1e-8
ORIGIN_RTOL = 1e-5
ORIGIN_ATOL_MM = 1e-4
DIRECTION_ATOL = 1e-5
MAX_LISTED_VALUES = 10
REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """Every problem of a raw dataset, in a deterministic order (dataset-wide first, then by case).

    Args:
        problems: The problems found.
        num_cases: Number of cases that were checked (training and test).
        root: The dataset folder, or None for a dataset built in code.
    """

    problems: tuple[Problem, ...] = ()
    num_cases: int = 0
    root: Path | None = None

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings are allowed)."""
        return not self.errors

    @property
    def errors(self) -> tuple[Problem, ...]:
        """The problems of severity ``"error"``."""
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """The problems of severity ``"warning"``."""
        return tuple(p for p in self.problems if p.severity == "warning")

    def summary(self) -> str:
        """Return one line counting errors and warnings and naming the cases with errors."""
        where = f" of {self.root}" if self.root is not None else ""
        text = (
            f"{_count(len(self.errors), 'error')} and {_count(len(self.warnings), 'warning')} in "
            f"{_count(self.num_cases, 'checked case')}{where}"
        )
        broken = sorted({p.case_id for p in self.errors if p.case_id is not None})
        if broken:
            text += f"; cases with errors: {', '.join(repr(c) for c in broken)}"
        return text + "."

    def format(self) -> str:
        """Return one line per problem followed by the summary line."""
        return "\n".join([*(p.format() for p in self.problems), self.summary()])

    def raise_for_errors(self) -> None:
        """Raise if the report holds any error.

        Raises:
            DatasetError: Listing every error, one per line.
        """
        if self.errors:
            lines = "\n".join(f"  - {p.message}" for p in self.errors)
            raise DatasetError(f"the dataset has {_count(len(self.errors), 'error')}:\n{lines}\n{self.summary()}")

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "root": None if self.root is None else str(self.root),
            "num_cases": self.num_cases,
            "problems": [p.to_json() for p in self.problems],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VerificationReport:
        """Rebuild a report from :meth:`to_json` output."""
        if data.get("schema_version") != REPORT_SCHEMA_VERSION:
            raise DatasetError(
                f"verification report has schema_version {data.get('schema_version')!r}; expected "
                f"{REPORT_SCHEMA_VERSION}. Re-run the verification."
            )
        root = data.get("root")
        return cls(
            problems=tuple(Problem.from_json(p) for p in data["problems"]),
            num_cases=int(data["num_cases"]),
            root=None if root is None else Path(root),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON, atomically."""
        atomic_write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VerificationReport:
        """Read a report written by :meth:`save`."""
        return cls.from_json(json.loads(Path(path).read_text()))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _fmt(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{float(v):.8g}" for v in values) + ")"


class _CaseLog:
    """Collects the problems of one case; names files relative to the dataset folder."""

    def __init__(self, case_id: str, root: Path | None) -> None:
        self.case_id = case_id
        self.root = root
        self.problems: list[Problem] = []

    def name(self, path: Path) -> str:
        if self.root is not None and path.is_relative_to(self.root):
            return path.relative_to(self.root).as_posix()
        return str(path)

    def add(self, severity: Severity, path: Path, text: str) -> None:
        self.problems.append(Problem(self.case_id, path, severity, f"case {self.case_id!r}, {self.name(path)}: {text}"))


@dataclass(frozen=True, slots=True)
class _Loaded:
    path: Path
    shape: tuple[int, ...]
    geometry: ImageGeometry


def _read(log: _CaseLog, path: Path, *, colours: bool = False) -> tuple[np.ndarray, ImageGeometry] | None:
    """Read one file; with ``colours``, as ``(c, z, y, x)`` with one channel per colour."""
    try:
        return read_images([path]) if colours else read_image(path)
    except ImageIOError as err:
        # the reader's message names the file already; only the case is added
        text = str(err).replace(str(path), log.name(path))
        log.problems.append(Problem(log.case_id, path, "error", f"case {log.case_id!r}: {text}"))
        return None


def _compare(log: _CaseLog, ref: _Loaded, this: _Loaded) -> None:
    """Shape and spacing must match the reference file; origin and direction differences only warn."""
    ref_name, g, r = log.name(ref.path), this.geometry, ref.geometry
    if g.ndim != r.ndim:
        log.add(
            "error",
            this.path,
            f"is a {g.ndim}D image but {ref_name} is {r.ndim}D; expected every file of a case "
            "to have the same number of dimensions.",
        )
        return
    same = "expected every channel and the label of a case to"
    if this.shape != ref.shape:
        log.add(
            "error",
            this.path,
            f"shape (z, y, x) is {this.shape} but {ref_name} has {ref.shape}; {same} have the same shape.",
        )
    if not np.allclose(g.itk_spacing, r.itk_spacing, rtol=SPACING_RTOL, atol=SPACING_ATOL):
        log.add(
            "error",
            this.path,
            f"spacing (z, y, x) is {_fmt(g.spacing)} mm but {ref_name} has {_fmt(r.spacing)} "
            f"mm (relative tolerance {SPACING_RTOL:g}); {same} share one spacing.",
        )
    if not np.allclose(g.itk_origin, r.itk_origin, rtol=ORIGIN_RTOL, atol=ORIGIN_ATOL_MM):
        log.add(
            "warning",
            this.path,
            f"origin (x, y, z) is {_fmt(g.itk_origin)} mm but {ref_name} has "
            f"{_fmt(r.itk_origin)} mm; expected the same origin (tolerance {ORIGIN_ATOL_MM:g} mm). Check that "
            "the files belong together; nnseg uses the first channel's geometry.",
        )
    if not np.allclose(g.itk_direction, r.itk_direction, rtol=0.0, atol=DIRECTION_ATOL):
        log.add(
            "warning",
            this.path,
            f"direction {_fmt(g.itk_direction)} differs from {ref_name}'s "
            f"{_fmt(r.itk_direction)}; expected the same direction cosines (tolerance {DIRECTION_ATOL:g}). Check "
            "that the files belong together; nnseg uses the first channel's geometry.",
        )


def _unique_ints(values: np.ndarray) -> list[int]:
    if values.size == 0:
        return []
    low, high = int(values.min()), int(values.max())
    if high - low < 2**16:  # counting is much faster than sorting on big label maps
        counts = np.bincount((values.ravel().astype(np.int64) - low), minlength=high - low + 1)
        return [int(v) + low for v in np.flatnonzero(counts)]
    return [int(v) for v in np.unique(values)]


def _check_label_values(log: _CaseLog, path: Path, array: np.ndarray, allowed: Sequence[int]) -> None:
    values = array
    if not np.issubdtype(array.dtype, np.integer):
        finite = np.isfinite(array)
        integral = finite & (array == np.round(array))
        if not np.all(integral):
            bad = np.unique(array[~integral])[:MAX_LISTED_VALUES]
            log.add(
                "error",
                path,
                f"holds {int(np.count_nonzero(~integral))} non-integer label value(s) (dtype "
                f"{array.dtype}), e.g. {[float(v) for v in bad]}; expected integer labels. Round the label map or "
                "re-export it as an integer image.",
            )
        values = array[integral].astype(np.int64)
    unexpected = sorted(set(_unique_ints(values)) - set(allowed))
    if unexpected:
        listed = unexpected[:MAX_LISTED_VALUES]
        more = f" and {len(unexpected) - len(listed)} more" if len(unexpected) > len(listed) else ""
        log.add(
            "error",
            path,
            f"holds label value(s) {listed}{more} that dataset.json does not declare; expected only "
            f"{list(allowed)}. Fix the label map or add the labels to 'labels' in dataset.json.",
        )


def verify_case(
    case: Case, allowed_labels: Sequence[int], root: Path | None = None, channel_names: Sequence[str] | None = None
) -> tuple[Problem, ...]:
    """Read every file of one case and return its problems.

    Args:
        case: The case; its label (if any) is checked too.
        allowed_labels: The label values dataset.json declares (``DatasetSpec.all_labels``).
        root: The dataset folder, used to name files relative to it in messages.
        channel_names: The channels dataset.json declares. When given, PNG, BMP and TIFF files are read
            with one channel per colour and the channels of the case are counted against them (so one
            RGB file may give the channels R, G, B); when None, every image file must be single-channel.

    Returns:
        The problems, in file order (channels, then the label).
    """
    log = _CaseLog(case.case_id, root)
    ref: _Loaded | None = None
    found, all_read = 0, True
    for path in case.image_paths:
        colours = channel_names is not None and is_colour_format(path.name)
        loaded = _read(log, path, colours=colours)
        if loaded is None:
            all_read = False
            continue
        array, geometry = loaded  # the reader refused damaged files, NaN, bad spacings and directions
        found += array.shape[0] if colours else 1
        this = _Loaded(path, array.shape[1:] if colours else array.shape, geometry)
        if ref is None:
            ref = this
        else:
            _compare(log, ref, this)
    if channel_names is not None and all_read and _colours_miscount(case, found, len(channel_names)):
        names = [Path(log.name(p)) for p in case.image_paths]
        log.problems.append(
            Problem(
                case.case_id,
                case.image_paths[0],
                "error",
                f"case {case.case_id!r}: {channel_count_message(names, found, channel_names)}",
            )
        )
    if case.label_path is not None:
        loaded = _read(log, case.label_path)
        if loaded is not None:
            array, geometry = loaded
            _check_label_values(log, case.label_path, array, allowed_labels)
            if ref is not None:
                _compare(log, ref, _Loaded(case.label_path, array.shape, geometry))
    return tuple(log.problems)


def _colours_miscount(case: Case, found: int, expected: int) -> bool:
    """Whether colour files give the case another channel count than declared (missing files: the layout's job)."""
    paths = case.image_paths
    return (
        any(is_colour_format(p.name) for p in paths) and found != expected and (len(paths) == 1 or found != len(paths))
    )


def _verify_job(job: tuple[Case, tuple[int, ...], Path | None, tuple[str, ...] | None]) -> tuple[Problem, ...]:
    return verify_case(*job)


def verify_dataset(dataset: RawDataset, *, num_workers: int = 1, progress: bool = False) -> VerificationReport:
    """Run :func:`verify_case` on every training and test case of ``dataset``.

    Args:
        dataset: The dataset to check.
        num_workers: Worker processes; 0 or 1 checks the cases in this process. The report is the same
            for any number of workers.
        progress: Show a progress bar (tqdm, on stderr).

    Returns:
        The layout warnings of ``dataset`` followed by the problems of every case, cases in id order
        (training cases, then test cases).

    Raises:
        ConfigError: If ``num_workers`` is not a non-negative int.
    """
    cases = (*dataset.cases, *dataset.test_cases)
    return verify_cases(
        cases,
        dataset.spec.all_labels,
        dataset.root,
        dataset.layout_warnings,
        num_workers=num_workers,
        progress=progress,
        channel_names=dataset.spec.channel_names,
    )


def verify_cases(
    cases: Sequence[Case],
    allowed_labels: Sequence[int],
    root: Path | None,
    first: Sequence[Problem] = (),
    *,
    num_workers: int = 1,
    progress: bool = False,
    channel_names: Sequence[str] | None = None,
) -> VerificationReport:
    """Run :func:`verify_case` on ``cases`` and collect one report that starts with ``first``.

    Args:
        cases: The cases to read, in report order.
        allowed_labels: The label values dataset.json declares.
        root: The dataset folder (names files in messages), or None.
        first: Problems found before reading (layout problems); they open the report.
        num_workers: Worker processes; 0 or 1 checks the cases in this process.
        progress: Show a progress bar (tqdm, on stderr).
        channel_names: The channels dataset.json declares, counted per case (see :func:`verify_case`).

    Raises:
        ConfigError: If ``num_workers`` is not a non-negative int.
    """
    parse_int("verify", "num_workers", num_workers, minimum=0)
    from tqdm.auto import tqdm

    names = None if channel_names is None else tuple(channel_names)
    jobs = [(case, tuple(allowed_labels), root, names) for case in cases]
    results: list[tuple[Problem, ...]] = []
    with tqdm(total=len(jobs), desc="verify", unit="case", disable=not progress) as bar:
        if num_workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(_verify_job(job))
                bar.update()
        else:
            # spawn: safe even when the caller's process runs threads (torch, a GUI); fork is not.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(num_workers, len(jobs)), mp_context=context) as pool:
                for result in pool.map(_verify_job, jobs):  # map keeps the input order
                    results.append(result)
                    bar.update()
    problems = (*first, *(p for result in results for p in result))
    return VerificationReport(problems=problems, num_cases=len(jobs), root=root)
