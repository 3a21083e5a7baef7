"""Ensembles of prediction folders in probability space (nnU-Net's ``nnUNetv2_ensemble``), sharded and resumable.

Each member folder holds, per case, ``<case>.npz`` (key ``probabilities``: float32, one channel per class or
region, in the array order of the source image) and ``<case>.json`` (the case properties, with the source
geometry), as ``nnseg predict --save-probabilities`` writes them. The ensemble averages the probabilities of
a case over the members and turns the mean into a label map as the predictor does: the arg-max for labels,
region painting above 0.5 in ``regions_class_order`` for regions. Unlike the fold ensemble (logits), members
are averaged as probabilities, as nnU-Net does for configurations.

The output folder records its members in ``ensemble.json`` and refuses to mix with another ensemble. Every
file is written atomically (the label map last), so a case whose outputs exist is complete and is skipped on
a rerun; ``Shard`` splits the sorted case ids as ``nnseg predict`` does.

:func:`predict_ensemble` (``nnseg predict -m A -m B``) predicts each member with probabilities into
``<output>/.members/<k>/`` and then ensembles the part's cases into ``<output>``.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nnseg._atomic import atomic_write_json
from nnseg.dataset import DatasetSpec
from nnseg.errors import CasesFailedError, EnsembleError
from nnseg.inference._export import paint_regions, write_probabilities
from nnseg.inference._folder import CasePredictor, predict_folder
from nnseg.inference._parts import PartManifest, prediction_status
from nnseg.io import ImageGeometry, write_segmentation
from nnseg.preprocessing import CaseProperties
from nnseg.sharding import Shard

__all__ = [
    "ENSEMBLE_MANIFEST",
    "MEMBERS_DIR",
    "EnsembleError",
    "check_members",
    "ensemble_folders",
    "ensemble_status",
    "predict_ensemble",
    "probabilities_to_segmentation",
]

logger = logging.getLogger(__name__)
ENSEMBLE_MANIFEST = "ensemble.json"
MEMBERS_DIR = ".members"
MAX_LISTED = 10
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, KeyError, ValueError, OSError, EOFError)


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names[:MAX_LISTED]) + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def probabilities_to_segmentation(probabilities: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """Label map from class (or region) probabilities ``(C, *spatial)``, the predictor's rule.

    Labels: the arg-max over the channels (the first channel wins a tie). Regions: each region above 0.5
    painted with its entry of ``regions_class_order``, later regions over earlier ones.
    """
    if spec.has_regions:
        return paint_regions(torch.from_numpy(np.ascontiguousarray(probabilities)), spec.regions_class_order or ())
    return np.asarray(probabilities).argmax(0).astype(np.uint16 if probabilities.shape[0] > 255 else np.uint8)


def _case_ids(folder: Path) -> set[str]:
    if not folder.is_dir():
        raise EnsembleError(f"prediction folder {folder} does not exist or is not a folder; check the path.")
    return {p.name[:-4] for p in folder.glob("*.npz") if not p.name.startswith(".")}


def _common_cases(folders: Sequence[Path], wanted: Sequence[str] | None = None) -> list[str]:
    per_folder = [_case_ids(folder) for folder in folders]
    every = set().union(*per_folder) if wanted is None else set(wanted)
    if wanted is not None and not every:
        return []
    if not every:
        raise EnsembleError(
            f"no <case>.npz probabilities in {', '.join(map(str, folders))}; predict with --save-probabilities "
            "(nnseg predict) or train with probabilities saved, then ensemble."
        )
    for folder, cases in zip(folders, per_folder):
        missing = sorted(every - cases)
        if missing:
            raise EnsembleError(
                f"the members hold different cases: {folder} lacks the probabilities of {len(missing)} case(s) the "
                f"others have: {_listed(missing)}; expected <case>.npz for every case in every folder. Predict the "
                "missing cases with --save-probabilities, or ensemble folders of the same cases."
            )
        no_sidecar = sorted(c for c in cases if not (folder / f"{c}.json").is_file())
        if no_sidecar:
            raise EnsembleError(
                f"{folder}: {len(no_sidecar)} case(s) have <case>.npz but no <case>.json (the properties with the "
                f"geometry): {_listed(no_sidecar)}; predict them again with --save-probabilities."
            )
    return sorted(every)


def _header_shape(path: Path) -> tuple[int, ...]:
    """Shape of ``probabilities`` in an ``.npz`` read from its header, without decompressing the array."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("probabilities.npy") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(handle)
    except _READ_ERRORS as err:
        raise EnsembleError(
            f"{path} is not a readable probabilities file ({type(err).__name__}: {err}); expected an .npz with the "
            "key 'probabilities'. Predict that case again with --save-probabilities."
        ) from err
    if not np.issubdtype(dtype, np.floating):
        raise EnsembleError(f"{path}: probabilities have dtype {dtype}; expected float32. Predict the case again.")
    return tuple(int(v) for v in shape)


def _check_shapes(folders: Sequence[Path], cases: Sequence[str], spec: DatasetSpec) -> None:
    channels = spec.num_segmentation_heads
    for case in cases:
        shapes = {folder: _header_shape(folder / f"{case}.npz") for folder in folders}
        for folder, shape in shapes.items():
            if len(shape) != 4 or shape[0] != channels:
                raise EnsembleError(
                    f"{folder / f'{case}.npz'} holds probabilities of shape {shape}; expected {channels} channel(s) "
                    f"(the {'regions' if spec.has_regions else 'classes'} of {spec.source}) and 3 spatial axes. The "
                    "members must be predictions of the same dataset labels."
                )
        if len(set(shapes.values())) > 1:
            listed = "; ".join(f"{folder}: {shape}" for folder, shape in shapes.items())
            raise EnsembleError(
                f"case {case}: the members' probabilities differ in shape ({listed}); expected predictions of the "
                "same images. Check that every member predicted the same input folder."
            )


def _start(output_dir: Path, folders: Sequence[Path], spec: DatasetSpec, save_probabilities: bool) -> None:
    record = {"format_version": 1, "members": [str(folder.resolve()) for folder in folders],
              "file_ending": spec.file_ending, "save_probabilities": save_probabilities}  # fmt: skip
    manifest = output_dir / ENSEMBLE_MANIFEST
    if manifest.is_file():
        try:
            existing = json.loads(manifest.read_text())
        except json.JSONDecodeError as err:
            raise EnsembleError(f"{manifest} is not valid JSON ({err.msg}); delete it and run again.") from err
        if existing != record:
            raise EnsembleError(
                f"{output_dir} holds another ensemble ({manifest}: members {existing.get('members')}, "
                f"save_probabilities {existing.get('save_probabilities')}); use a new output folder for these members "
                "or settings."
            )
        return
    atomic_write_json(manifest, record)
    spec.save(output_dir / "dataset.json")


def _load(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["probabilities"], dtype=np.float32)
    except _READ_ERRORS as err:
        raise EnsembleError(
            f"{path} cannot be read ({type(err).__name__}: {err}); the file is damaged. Predict that case again "
            "with --save-probabilities, then rerun the ensemble (finished cases are kept)."
        ) from err


def _ensemble_case(folders: Sequence[Path], case: str, output_dir: Path, spec: DatasetSpec, save: bool) -> None:
    total = _load(folders[0] / f"{case}.npz")
    for folder in folders[1:]:
        total += _load(folder / f"{case}.npz")
    mean = total / np.float32(len(folders))
    properties = CaseProperties.load(folders[0] / f"{case}.json")
    geometry = properties.geometry or ImageGeometry.identity(properties.spacing)
    if save:
        write_probabilities(output_dir / f"{case}.npz", mean)
        properties.save(output_dir / f"{case}.json")
    write_segmentation(probabilities_to_segmentation(mean, spec), output_dir / f"{case}{spec.file_ending}", geometry)


def _is_done(output_dir: Path, case: str, spec: DatasetSpec, save: bool) -> bool:
    names = [f"{case}{spec.file_ending}"] + ([f"{case}.npz", f"{case}.json"] if save else [])
    return all((output_dir / name).is_file() for name in names)


def ensemble_folders(
    input_dirs: Sequence[str | os.PathLike[str]], output_dir: str | os.PathLike[str], spec: DatasetSpec, *,
    shard: Shard | None = None, save_probabilities: bool = False, overwrite: bool = False,
    case_ids: Sequence[str] | None = None,
) -> list[str]:  # fmt: skip
    """Average the saved probabilities of several prediction folders case by case and write label maps.

    Args:
        input_dirs: Two or more folders with ``<case>.npz`` and ``<case>.json`` for the same cases.
        output_dir: Receives ``<case><file_ending>`` (and with ``save_probabilities`` the mean ``<case>.npz``
            and ``<case>.json``), ``ensemble.json`` and ``dataset.json``.
        spec: The dataset's labels: classes (arg-max) or regions (painted), and the file ending.
        shard: The part of the sorted case ids to do (default: all).
        save_probabilities: Also write the averaged probabilities.
        overwrite: Redo cases whose outputs exist.
        case_ids: Only these cases (each must be in every member; ``shard`` then splits them); default: every
            case of the members, which must hold the same cases.

    Returns:
        The case ids written by this call.

    Raises:
        EnsembleError: Before anything is written, if the folders hold different cases, a probabilities file is
            damaged or of another shape or class count, or the output folder holds another ensemble; while
            writing, if a file turns out damaged (the finished cases stay).

    Example:
        >>> ensemble_folders(["work/pred_2d", "work/pred_3d"], "work/pred_ensemble", spec, shard=Shard(0, 2))
    """
    folders = [Path(folder) for folder in input_dirs]
    target = Path(output_dir)
    if len(folders) < 2 or len({folder.resolve() for folder in folders}) != len(folders):
        raise EnsembleError(
            f"an ensemble needs two or more different prediction folders; got {[str(f) for f in folders]}."
        )
    if target.resolve() in {folder.resolve() for folder in folders}:
        raise EnsembleError(f"the output folder {target} is one of the members; choose another output folder.")
    cases = _common_cases(folders, case_ids)
    _check_shapes(folders, cases, spec)
    target.mkdir(parents=True, exist_ok=True)
    _start(target, folders, spec, save_probabilities)
    todo = [c for c in (shard or Shard.whole()).select(cases)
            if overwrite or not _is_done(target, c, spec, save_probabilities)]  # fmt: skip
    logger.info("ensemble of %d folders: %d case(s) to write into %s", len(folders), len(todo), target)
    for case in todo:
        _ensemble_case(folders, case, target, spec, save_probabilities)
    return todo


def check_members(predictors: Sequence[CasePredictor], names: Sequence[str]) -> None:
    """Refuse members that cannot be ensembled: other labels, channels, file ending or plans, or the same model twice.

    Raises:
        EnsembleError: Naming the two members and what differs.
    """
    first, first_name = predictors[0], names[0]

    def facts(member: CasePredictor) -> dict[str, object]:
        spec, plan = member.spec, member.model.plan
        return {"labels": dict(spec.labels), "regions_class_order": spec.regions_class_order,
                "channels": spec.channel_names, "file ending": spec.file_ending,
                "plans (dataset, plans name)": (plan.dataset_name, plan.plans_name)}  # fmt: skip

    for member, name in zip(predictors, names):
        if member.model.plan.previous_stage is not None:
            raise EnsembleError(
                f"-m {name} is a cascade stage ({member.model.plan.name!r}); cascades are not ensemble members of "
                "`nnseg predict` yet. Predict it alone with --save-probabilities, then run `nnseg ensemble`."
            )
    reference, seen = facts(first), {first.model.identity(): first_name}
    for member, name in zip(predictors[1:], names[1:]):
        for what, value in facts(member).items():
            if value != reference[what]:
                raise EnsembleError(
                    f"-m {first_name} and -m {name} cannot be ensembled: their {what} differ ({reference[what]!r} vs "
                    f"{value!r}); expected configurations of one dataset trained with the same plans and labels."
                )
        if (identity := member.model.identity()) in seen:
            raise EnsembleError(f"-m {seen[identity]} and -m {name} are the same model; give each member once.")
        seen[identity] = name


def predict_ensemble(
    predictors: Sequence[CasePredictor], input_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str], *,
    names: Sequence[str] | None = None, shard: Shard | None = None, overwrite: bool = False,
    save_probabilities: bool = False, num_workers: int = 1, progress: bool = True,
) -> list[str]:  # fmt: skip
    """Predict with several models and ensemble them in probability space (``nnseg predict -m A -m B``).

    Member ``k`` predicts the part ``shard`` of ``input_dir`` with probabilities into
    ``<output_dir>/.members/<k>/`` (a full prediction folder: resumable, checksummed, locked per part); then
    the part's cases are averaged into ``output_dir`` by :func:`ensemble_folders`, exactly as
    ``nnseg ensemble -i MEMBER_0 MEMBER_1 ...`` would.

    Args:
        predictors: Two or more predictors of one dataset's labels and plans (e.g. 2d and 3d_fullres).
        input_dir: The images.
        output_dir: Receives the ensembled label maps (and ``.members/``).
        names: How the members are named in messages (default ``member 0``, ``member 1``, ...).
        shard: The part of the sorted case ids to do (default: all).
        overwrite: Redo finished cases.
        save_probabilities: Also write the averaged probabilities.
        num_workers: Preprocessing threads per member.
        progress: Show progress bars.

    Returns:
        The case ids ensembled by this call.

    Raises:
        EnsembleError: If the members cannot be ensembled (before anything is written).
        CasesFailedError: If some inputs failed (the others are predicted and ensembled).
    """
    if len(predictors) < 2:
        raise EnsembleError(f"an ensemble needs two or more models; got {len(predictors)}.")
    labels = list(names) if names is not None else [f"member {k}" for k in range(len(predictors))]
    check_members(predictors, labels)
    target, shard = Path(output_dir), shard or Shard.whole()
    members = [target / MEMBERS_DIR / str(k) for k in range(len(predictors))]
    failures: dict[str, str] = {}
    for predictor, folder, name in zip(predictors, members, labels):
        try:
            predict_folder(predictor, input_dir, folder, shard=shard, overwrite=overwrite, save_probabilities=True,
                           num_workers=num_workers, progress=progress)  # fmt: skip
        except CasesFailedError as err:
            failures.update({case: f"{name}: {reason}" for case, reason in err.failures.items()})
    owned = PartManifest.load_all(members[0])
    cases = [c for m in owned if m.shard == shard for c in m.owned_case_ids if c not in failures]
    written = ensemble_folders(members, target, predictors[0].spec, case_ids=cases, save_probabilities=save_probabilities,
                               overwrite=overwrite) if cases else []  # fmt: skip
    if failures:
        listed = "; ".join(f"{case}: {reason}" for case, reason in sorted(failures.items()))
        raise CasesFailedError(f"{len(failures)} case(s) failed ({shard}): {listed}. The others are ensembled; fix "
                               "those inputs and rerun to predict them.", failures)  # fmt: skip
    return written


def ensemble_status(output_dir: str | os.PathLike[str]) -> tuple[list[str], bool]:
    """Lines describing a multi-model prediction folder (each member, then the ensemble), and whether it is complete."""
    root = Path(output_dir)
    members = sorted((p for p in (root / MEMBERS_DIR).iterdir() if p.is_dir()), key=lambda p: p.name)
    lines, complete = [], True
    all_ids: tuple[str, ...] = ()
    for folder in members:
        status = prediction_status(folder)
        complete &= status.is_complete
        lines += [f"member {folder.name}: {line}" for line in status.summary()]
        manifests = PartManifest.load_all(folder)
        all_ids = all_ids or (manifests[0].all_case_ids if manifests else ())
    ending = (
        json.loads((root / ENSEMBLE_MANIFEST).read_text())["file_ending"]
        if (root / ENSEMBLE_MANIFEST).is_file()
        else ""
    )
    missing = [case for case in all_ids if not ending or not (root / f"{case}{ending}").is_file()]
    complete &= bool(all_ids) and not missing
    shown = f"; missing: {_listed(missing)}" if missing else ""
    lines.append(f"{root}: ensemble {len(all_ids) - len(missing)}/{len(all_ids)} case(s){shown}: "
                 f"{'COMPLETE' if complete else 'INCOMPLETE'}")  # fmt: skip
    return lines, complete
