"""``RawDataset``: a raw dataset in nnU-Net's layout (or built in code), with cheap layout checks.

:meth:`RawDataset.from_folder` lists the files and checks the layout (no image is read); the full
integrity check that reads every file is :meth:`RawDataset.verify`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnseg._suggest import close_matches
from nnseg.dataset._case import Case, channel_files_fit
from nnseg.dataset._layout import scan_folder
from nnseg.dataset._problem import Problem
from nnseg.dataset._spec import DatasetSpec
from nnseg.dataset._verify import VerificationReport, verify_cases, verify_dataset
from nnseg.errors import DatasetError, DatasetLayoutError, UnknownCaseError

__all__ = ["DatasetLayoutError", "RawDataset", "UnknownCaseError", "verify_folder"]


@dataclass(frozen=True, slots=True)
class RawDataset:
    """A raw dataset: its ``dataset.json`` content, its training cases and its test cases.

    Open a folder with :meth:`from_folder` or build a dataset in code with :meth:`from_cases`. The
    constructor only checks its arguments (it reads no file): training cases are sorted by id and must
    each have a label, every case must have one image file per channel (or one PNG, BMP or TIFF colour
    file holding every channel, counted when :meth:`verify` reads it), ids must be unique, and
    ``spec.num_training`` must equal the number of training cases.

    Args:
        spec: The parsed ``dataset.json``.
        cases: The training cases (any order; stored sorted by id).
        test_cases: Cases without training role (``imagesTs``), stored sorted by id; labels optional.
        root: The dataset folder, or None for a dataset built in code.
        layout_warnings: Warnings found while reading the folder layout (repeated in :meth:`verify`).

    Raises:
        DatasetError: Listing every problem with the cases.
    """

    spec: DatasetSpec
    cases: tuple[Case, ...]
    test_cases: tuple[Case, ...] = ()
    root: Path | None = None
    layout_warnings: tuple[Problem, ...] = ()
    _index: dict[str, Case] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cases = tuple(sorted(self.cases, key=lambda c: c.case_id)) if _all_cases(self.cases) else tuple(self.cases)
        tests = tuple(sorted(self.test_cases, key=lambda c: c.case_id)) if _all_cases(self.test_cases) else ()
        problems = _check_cases(self.spec, cases, "training case") + _check_cases(self.spec, tests, "test case")
        problems += [
            f"training case {c.case_id!r} has no label_path; expected a label map for every training case "
            "(put cases without labels into test_cases)."
            for c in cases
            if isinstance(c, Case) and c.label_path is None
        ]
        if len(cases) != self.spec.num_training and not problems:
            problems.append(
                f"spec.num_training (numTraining) is {self.spec.num_training} but there are {len(cases)} training "
                f"cases; expected them to agree. Use dataclasses.replace(spec, num_training={len(cases)})."
            )
        if problems:
            raise DatasetError(
                f"cannot build the RawDataset ({len(problems)} problem(s)):\n" + "\n".join(f"  - {p}" for p in problems)
            )
        object.__setattr__(self, "cases", cases)
        object.__setattr__(self, "test_cases", tests)
        object.__setattr__(self, "root", None if self.root is None else Path(self.root))
        object.__setattr__(self, "layout_warnings", tuple(self.layout_warnings))
        object.__setattr__(self, "_index", {c.case_id: c for c in cases})

    # ----------------------------------------------------------------------------------- constructors
    @classmethod
    def from_folder(cls, path: str | os.PathLike[str]) -> RawDataset:
        """Open a raw dataset folder in nnU-Net's layout and check the layout.

        The folder holds ``dataset.json``, ``imagesTr/<case>_<XXXX><ending>`` (one file per channel,
        ``XXXX`` the 4-digit channel index; for PNG, BMP and TIFF, every case may instead give all its
        channels in one colour file ``<case>_0000``), ``labelsTr/<case><ending>`` and optionally ``imagesTs/``
        (and ``labelsTs/``). A ``dataset`` key in ``dataset.json`` (nnU-Net's explicit file list) replaces
        ``imagesTr``/``labelsTr``. No image is read; call :meth:`verify` for that. Layout warnings (e.g.
        ignored files) are emitted with :func:`warnings.warn` and kept in ``layout_warnings``.

        Example:
            >>> ds = RawDataset.from_folder("raw/Dataset001_Liver")
            >>> ds.verify(num_workers=8).raise_for_errors()

        Args:
            path: The dataset folder.

        Returns:
            The dataset, with training and test cases sorted by id.

        Raises:
            DatasetLayoutError: (a :class:`DatasetError`) listing every layout problem found.
        """
        root = Path(path)
        spec, cases, test_cases, problems = scan_folder(root)
        errors = [p for p in problems if p.severity == "error"]
        if errors or spec is None:
            raise DatasetLayoutError(root, problems)
        layout_warnings = tuple(p for p in problems if p.severity == "warning")
        for problem in layout_warnings:
            warnings.warn(problem.message, stacklevel=2)
        return cls(spec, tuple(cases), tuple(test_cases), root=root, layout_warnings=layout_warnings)

    @classmethod
    def from_cases(
        cls,
        spec: DatasetSpec,
        cases: Iterable[Case],
        root: str | os.PathLike[str] | None = None,
        *,
        test_cases: Iterable[Case] = (),
    ) -> RawDataset:
        """Build a dataset from cases listed in code.

        Example:
            >>> case = Case("liver_000", ("img/liver_000_ct.nii.gz",), "seg/liver_000.nii.gz")
            >>> ds = RawDataset.from_cases(spec, [case], root="/data/liver")

        Args:
            spec: The dataset description; ``spec.num_training`` must equal the number of cases.
            cases: The training cases, each with one image per channel and a label.
            root: If given, relative paths of the cases are taken relative to this folder.
            test_cases: Optional cases without training role.

        Raises:
            DatasetError: Listing every case with the wrong number of channel files, without a label, or
                with a duplicate id.
        """
        base = None if root is None else Path(root)
        return cls(
            spec,
            tuple(_resolve(c, base) for c in cases),
            tuple(_resolve(c, base) for c in test_cases),
            root=base,
        )

    # ----------------------------------------------------------------------------------- access
    @property
    def case_ids(self) -> tuple[str, ...]:
        """The training case ids, sorted."""
        return tuple(c.case_id for c in self.cases)

    @property
    def test_case_ids(self) -> tuple[str, ...]:
        """The test case ids, sorted."""
        return tuple(c.case_id for c in self.test_cases)

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __contains__(self, case_id: object) -> bool:
        return case_id in self._index

    def __getitem__(self, case_id: str) -> Case:
        try:
            return self._index[case_id]
        except (KeyError, TypeError):
            pass
        hint = ""
        if case_id in self.test_case_ids:
            hint = " It is a test case; find it in dataset.test_cases."
        else:
            matches = close_matches(str(case_id), self.case_ids, max_matches=3)
            if matches:
                hint = f" Did you mean {', '.join(repr(m) for m in matches)}?"
        where = f" of {self.root}" if self.root is not None else ""
        raise UnknownCaseError(
            f"no training case {case_id!r} in the dataset{where} ({len(self.cases)} cases, "
            f"{_preview(self.case_ids)}).{hint}"
        )

    # ----------------------------------------------------------------------------------- checks
    def verify(self, num_workers: int = 1, *, progress: bool = False) -> VerificationReport:
        """Read every file of every case and report every problem at once.

        Errors: unreadable, empty or 4D files; shapes or spacings that differ between the channels and the
        label of a case; NaN or infinite intensities; non-integer label values; label values that
        ``dataset.json`` does not declare. Warnings: origin or direction differences within a case, and
        the layout warnings. Tolerances are listed in :mod:`nnseg.dataset._verify` and docs/dataset.md.

        Args:
            num_workers: Worker processes (0 or 1: in this process). The report does not depend on it.
            progress: Show a progress bar on stderr.

        Returns:
            The report; call ``report.raise_for_errors()`` to turn errors into a :class:`DatasetError`.
        """
        return verify_dataset(self, num_workers=num_workers, progress=progress)


def verify_folder(path: str | os.PathLike[str], *, num_workers: int = 1, progress: bool = False) -> VerificationReport:
    """Check a raw dataset folder completely, even when its layout is broken, and report every problem.

    ``RawDataset.from_folder(path).verify()`` stops at the first stage that fails: a broken layout raises
    before any file is read. This function reports the layout problems (errors and warnings) and then reads
    every case whose files could be found (a training case needs its label and at least one channel
    file), so one run lists every problem of the folder. It is what ``nnseg verify`` runs. When
    ``dataset.json`` itself is missing or invalid there are no declared labels to check against, and only
    the layout problems are reported.

    Example:
        >>> report = verify_folder("raw/Dataset001_Liver", num_workers=4)
        >>> print(report.format())

    Args:
        path: The dataset folder.
        num_workers: Worker processes (0 or 1: in this process). The report does not depend on it.
        progress: Show a progress bar on stderr.

    Returns:
        The report: layout problems first, then the problems of every case read (training cases, then
        test cases, in id order). ``report.ok`` is True exactly when ``RawDataset.from_folder(path)``
        succeeds and its ``verify()`` finds no error.

    Raises:
        ConfigError: If ``num_workers`` is not a non-negative int.
    """
    root = Path(path)
    spec, cases, test_cases, problems = scan_folder(root)
    if spec is None:
        return verify_cases((), (), root, problems, num_workers=num_workers, progress=progress)
    return verify_cases(
        (*cases, *test_cases),
        spec.all_labels,
        root,
        problems,
        num_workers=num_workers,
        progress=progress,
        channel_names=spec.channel_names,
    )


def _all_cases(cases: object) -> bool:
    return isinstance(cases, Iterable) and all(isinstance(c, Case) for c in cases)


def _preview(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (", ..." if len(ids) > limit else "") if ids else "none"


def _resolve(case: Case, root: Path | None) -> Case:
    if not isinstance(case, Case):
        raise DatasetError(f"RawDataset.from_cases: expected Case objects; got {type(case).__name__} ({case!r}).")
    if root is None:
        return case
    label = None if case.label_path is None else root / case.label_path
    return Case(case.case_id, tuple(root / p for p in case.image_paths), label)


def _check_cases(spec: DatasetSpec, cases: Sequence[object], kind: str) -> list[str]:
    """Return one message per case that is not a Case, has the wrong channel count, or repeats an id."""
    problems: list[str] = []
    seen: set[str] = set()
    for case in cases:
        if not isinstance(case, Case):
            problems.append(f"expected Case objects; got {type(case).__name__} ({case!r}).")
            continue
        if not channel_files_fit(case, spec.num_channels):
            problems.append(
                f"{kind} {case.case_id!r} has {case.num_channels} image file(s) "
                f"({', '.join(p.name for p in case.image_paths)}) but the spec declares {spec.num_channels} "
                f"channel(s) {list(spec.channel_names)}; expected one image file per channel (or one PNG, BMP or "
                "TIFF colour file holding every channel)."
            )
        if case.case_id in seen:
            problems.append(f"{kind} id {case.case_id!r} appears more than once; expected unique case ids.")
        seen.add(case.case_id)
    return problems
