"""Cheap layout checks of a raw dataset folder: list and pair the files, never read an image.

:func:`scan_folder` returns every problem it finds instead of stopping at the first one; the caller
(:meth:`nnseg.dataset.RawDataset.from_folder`) raises one error listing them all. Hidden files (names
starting with ``.``, e.g. an in-progress atomic write) are skipped silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nnseg._image_formats import IMAGE_FORMAT_ENDINGS
from nnseg.dataset._case import Case, image_file_name, label_file_name, parse_image_file_name
from nnseg.dataset._problem import Problem
from nnseg.dataset._spec import DatasetSpec
from nnseg.errors import DatasetError
from nnseg.io import SUPPORTED_ENDINGS

__all__ = ["scan_folder"]

IMAGE_LIKE_ENDINGS = (
    *SUPPORTED_ENDINGS,
    ".nhdr",
    ".mhd",
    ".gipl",
    ".gipl.gz",
    ".hdr",
    ".img",
    ".tif",
    ".tiff",
    ".png",
    ".bmp",
    ".jpg",
    ".jpeg",
    ".dcm",
    ".npy",
    ".npz",
)
"""Endings of files that look like images: one of these with the wrong ending is an error, not ignored."""


class _Log:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)

    def error(self, case_id: str | None, path: Path | None, message: str) -> None:
        self.problems.append(Problem(case_id, path, "error", message))

    def warn(self, case_id: str | None, path: Path | None, message: str) -> None:
        self.problems.append(Problem(case_id, path, "warning", message))


def scan_folder(root: Path) -> tuple[DatasetSpec | None, list[Case], list[Case], list[Problem]]:
    """List the cases of a raw dataset folder and check its layout.

    Args:
        root: The dataset folder.

    Returns:
        ``(spec, training_cases, test_cases, problems)``; ``spec`` is None when ``dataset.json`` is
        missing or invalid. The cases are only meaningful when ``problems`` holds no error.
    """
    log = _Log(root)
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        log.error(
            None,
            root,
            f"{root} {state}; expected an nnU-Net raw dataset folder holding dataset.json, imagesTr/ and labelsTr/.",
        )
        return None, [], [], log.problems
    try:
        spec = DatasetSpec.load(root / "dataset.json")
    except DatasetError as err:
        log.error(None, root / "dataset.json", str(err))
        _require_folders(root, log, "<ending>")
        return None, [], [], log.problems
    if spec.file_ending not in (*SUPPORTED_ENDINGS, *IMAGE_FORMAT_ENDINGS):
        log.error(
            None,
            root / "dataset.json",
            f"dataset.json: file_ending {spec.file_ending!r} is not supported; "
            f"expected one of {', '.join((*SUPPORTED_ENDINGS, *IMAGE_FORMAT_ENDINGS))}. Convert the files (e.g. to .nii.gz with "
            "SimpleITK) and set file_ending accordingly.",
        )
        _require_folders(root, log, spec.file_ending)
        return spec, [], [], log.problems  # listing files with an ending nnseg cannot read would only add noise
    reader = spec.extra.get("overwrite_image_reader_writer")
    natural = ("NaturalImage2DIO", "Tiff3DIO") if spec.file_ending in IMAGE_FORMAT_ENDINGS else ()
    if reader not in (None, "None", "SimpleITKIO", *natural):
        log.warn(
            None,
            root / "dataset.json",
            f"dataset.json: overwrite_image_reader_writer is {reader!r}; nnseg "
            "reads every file with SimpleITK (PNG, BMP, TIFF with Pillow and tifffile) and ignores this setting.",
        )
    if "dataset" in spec.extra:
        cases = _cases_from_dataset_key(root, spec, spec.extra["dataset"], log)
    else:
        cases = _training_cases(root, spec, log)
    tests = _test_cases(root, spec, log)
    both = sorted({c.case_id for c in cases} & {c.case_id for c in tests})
    if both:
        log.warn(
            None,
            root / "imagesTs",
            f"case id(s) {both} appear among both the training and the test cases; "
            "expected them to be disjoint (a test case should not be trained on).",
        )
    return spec, cases, tests, log.problems


def _require_folders(root: Path, log: _Log, ending: str) -> bool:
    ok = True
    for name, what in (
        ("imagesTr", f"training images named <case>_<XXXX>{ending}"),
        ("labelsTr", f"label maps named <case>{ending}"),
    ):
        if not (root / name).is_dir():
            log.error(None, root / name, f"{name}/ is missing from {root}; expected a folder of {what}.")
            ok = False
    return ok


def _list_files(folder: Path, spec: DatasetSpec, log: _Log) -> list[Path]:
    """Return the files of ``folder`` with the dataset's ending; log every other entry."""
    ending, found = spec.file_ending, []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            log.warn(
                None, entry, f"{log.rel(entry)}/: sub-folder ignored; expected the files directly in {folder.name}/."
            )
        elif entry.name.endswith(ending):
            found.append(entry)
        elif entry.name.lower().endswith(IMAGE_LIKE_ENDINGS):
            log.error(
                None,
                entry,
                f"{log.rel(entry)}: file ending differs from file_ending {ending!r} in "
                f"dataset.json; expected every image and label file to end with {ending!r}. Convert or "
                "rename the file, or fix file_ending.",
            )
        else:
            log.warn(None, entry, f"{log.rel(entry)}: ignored, not a {ending!r} file.")
    return found


def _scan_images(folder: Path, spec: DatasetSpec, log: _Log) -> dict[str, tuple[Path, ...]]:
    """Group the image files of ``folder`` by case; log misnamed files, incomplete cases and mixed forms."""
    ending, num_channels = spec.file_ending, spec.num_channels
    by_case: dict[str, dict[int, Path]] = {}
    for path in _list_files(folder, spec, log):
        parsed = parse_image_file_name(path.name, ending)
        if parsed is None:
            example = image_file_name(path.name[: -len(ending)] or "case", 0, ending)
            log.error(
                None,
                path,
                f"{log.rel(path)}: file name does not follow the image naming rule "
                f"<case>_<XXXX>{ending} (XXXX: 4-digit channel index); expected e.g. {example}. Rename the file.",
            )
            continue
        case_id, channel = parsed
        by_case.setdefault(case_id, {})[channel] = path
    # a colour format may give every channel in one file <case>_0000 (read, and counted, by verify)
    one_file = sorted(cid for cid, ch in by_case.items() if set(ch) == {0}) if _colour_dataset(spec) else []
    per_channel = sorted(cid for cid, ch in by_case.items() if len(ch) > 1)
    if one_file and per_channel:
        log.error(
            None,
            folder,
            f"{folder.name}/: {len(one_file)} case(s) give only <case>_0000{ending}, which must "
            f"then hold all {num_channels} channels as colours (e.g. {one_file[:3]}), but {len(per_channel)} "
            f"case(s) give one file per channel (e.g. {per_channel[:3]}); expected one form for every case. Add "
            f"the missing channel files (e.g. {image_file_name(one_file[0], 1, ending)}), or give every case as "
            "one colour file.",
        )
    for case_id, channels in sorted(by_case.items()):
        expected = [image_file_name(case_id, c, ending) for c in range(num_channels)]
        for channel in sorted(c for c in channels if c >= num_channels):
            path = channels[channel]
            log.error(
                case_id,
                path,
                f"case {case_id!r}, {log.rel(path)}: channel index {channel:04d} is beyond the "
                f"{num_channels} channel(s) dataset.json declares {list(spec.channel_names)}; expected only "
                f"{expected}. Remove the file or add the channel to 'channel_names'.",
            )
        missing = [expected[c] for c in range(num_channels) if c not in channels]
        if missing and case_id not in one_file:
            found = [channels[c].name for c in sorted(channels)]
            also = f" (or one colour file {expected[0]} holding every channel)" if _colour_dataset(spec) else ""
            log.error(
                case_id,
                folder / missing[0],
                f"case {case_id!r}: found {len(found)} of {num_channels} channel "
                f"file(s) in {folder.name}/ {found}; expected {expected}{also}. Add the missing {missing}, or "
                "fix 'channel_names' in dataset.json.",
            )
    return {cid: tuple(ch[c] for c in sorted(ch) if c < num_channels) for cid, ch in sorted(by_case.items())}


def _colour_dataset(spec: DatasetSpec) -> bool:
    """Whether a case may give all of several channels in one colour file ``<case>_0000``."""
    return spec.num_channels > 1 and spec.file_ending in IMAGE_FORMAT_ENDINGS


def _scan_labels(folder: Path, spec: DatasetSpec, log: _Log) -> dict[str, Path]:
    return {p.name[: -len(spec.file_ending)]: p for p in _list_files(folder, spec, log)}


def _training_cases(root: Path, spec: DatasetSpec, log: _Log) -> list[Case]:
    ending = spec.file_ending
    if not _require_folders(root, log, ending):
        return []
    images = _scan_images(root / "imagesTr", spec, log)
    labels = _scan_labels(root / "labelsTr", spec, log)
    if not images and not labels:
        log.error(
            None,
            root / "imagesTr",
            f"imagesTr/ holds no image files ending in {ending!r}; expected "
            f"training images such as {image_file_name('case_000', 0, ending)}.",
        )
        return []
    for case_id in sorted(set(labels) - set(images)):
        log.error(
            case_id,
            labels[case_id],
            f"case {case_id!r}, {log.rel(labels[case_id])}: label file without "
            f"image files; expected imagesTr/{image_file_name(case_id, 0, ending)}"
            f"{' ...' if spec.num_channels > 1 else ''}. Add the images or remove the label file.",
        )
    for case_id in sorted(set(images) - set(labels)):
        names = [p.name for p in images[case_id]]
        log.error(
            case_id,
            root / "labelsTr" / label_file_name(case_id, ending),
            f"case {case_id!r}: image file(s) "
            f"{names} in imagesTr/ have no label file; expected labelsTr/{label_file_name(case_id, ending)}. "
            "Add the label map, or move the images to imagesTs/ if the case has none.",
        )
    _check_num_training(root, spec, len(images), "imagesTr/ holds", log)
    return [Case(cid, paths, labels[cid]) for cid, paths in images.items() if cid in labels and paths]


def _check_num_training(root: Path, spec: DatasetSpec, found: int, where: str, log: _Log) -> None:
    if found != spec.num_training:
        log.error(
            None,
            root / "dataset.json",
            f"dataset.json: numTraining is {spec.num_training} but {where} "
            f"{found} case(s); expected them to agree. Set numTraining to {found} or add the missing cases.",
        )


def _test_cases(root: Path, spec: DatasetSpec, log: _Log) -> list[Case]:
    if not (root / "imagesTs").is_dir():
        return []
    images = _scan_images(root / "imagesTs", spec, log)
    labels = _scan_labels(root / "labelsTs", spec, log) if (root / "labelsTs").is_dir() else {}
    for case_id in sorted(set(labels) - set(images)):
        log.warn(
            case_id,
            labels[case_id],
            f"case {case_id!r}, {log.rel(labels[case_id])}: test label file without "
            f"images; expected imagesTs/{image_file_name(case_id, 0, spec.file_ending)}. It is ignored.",
        )
    return [Case(cid, paths, labels.get(cid)) for cid, paths in images.items() if paths]


def _cases_from_dataset_key(root: Path, spec: DatasetSpec, entries: Any, log: _Log) -> list[Case]:
    """Training cases from the explicit ``dataset`` key: ``{case_id: {"images": [...], "label": ...}}``."""
    json_path = root / "dataset.json"
    if not isinstance(entries, Mapping):
        log.error(
            None,
            json_path,
            f'dataset.json: \'dataset\' must map case ids to {{"images": [...], "label": '
            f"...}}; got {type(entries).__name__}.",
        )
        return []
    cases = []
    for case_id, entry in sorted(entries.items()):
        images = entry.get("images") if isinstance(entry, Mapping) else None
        label = entry.get("label") if isinstance(entry, Mapping) else None
        if not isinstance(images, list) or not all(isinstance(p, str) for p in images) or not isinstance(label, str):
            log.error(
                case_id,
                json_path,
                f"case {case_id!r}: dataset.json 'dataset' entry is {entry!r}; expected "
                '{"images": [one path per channel], "label": path}.',
            )
            continue
        paths = [_entry_path(root, case_id, p, log) for p in (*images, label)]
        fits = len(images) == spec.num_channels or (len(images) == 1 and _colour_dataset(spec))
        if not fits:
            log.error(
                case_id,
                json_path,
                f"case {case_id!r}: dataset.json 'dataset' lists {len(images)} image "
                f"file(s) {images}; expected one per channel: {spec.num_channels} channel(s) {list(spec.channel_names)}"
                f"{' (or one colour file holding every channel)' if _colour_dataset(spec) else ''}.",
            )
        if all(p is not None for p in paths) and fits:
            cases.append(Case(case_id, tuple(p for p in paths[:-1] if p is not None), paths[-1]))
    _check_num_training(root, spec, len(entries), "the 'dataset' key lists", log)
    return cases


def _entry_path(root: Path, case_id: str, text: str, log: _Log) -> Path | None:
    if "$" in text:
        log.error(
            case_id,
            root / "dataset.json",
            f"case {case_id!r}: path {text!r} in dataset.json 'dataset' uses an "
            "environment variable, which nnseg does not expand; expected a plain path (relative to the "
            "dataset folder, or absolute). Write the path out.",
        )
        return None
    path = root / text
    if not path.is_file():
        log.error(
            case_id,
            path,
            f"case {case_id!r}, {log.rel(path)}: listed in dataset.json 'dataset' but does "
            "not exist; expected an image file. Fix the path.",
        )
        return None
    return path
