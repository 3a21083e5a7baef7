"""``predict_folder``: predict a folder of cases, one shard at a time, so that no case is ever lost.

Rules:

* the input cases are the ``<case>_<XXXX><ending>`` files of the input folder; every case must have all the
  channels of ``dataset.json`` (checked before anything is written);
* a part owns ``Shard(part_id, num_parts).select(sorted case ids)``, nnU-Net's ``-num_parts/-part_id``;
* the part writes its own manifest first (``nnseg_parts/part_K_of_N.json``), refusing an output folder that
  holds parts of another model, other settings or another part count;
* every output is written atomically, the label map last; a case whose outputs all exist is complete and is
  skipped (unless ``overwrite``); temporary files a killed run left behind for the part's cases are removed;
* while the network works on one case, the next ones are preprocessed and the previous one is exported in
  background threads.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from nnseg.dataset import Case, DatasetSpec
from nnseg.dataset._case import parse_image_file_name
from nnseg.inference._export import ExportedPrediction, write_outputs
from nnseg.inference._model import TrainedModel
from nnseg.inference._parts import (
    CasesFailedError,
    PartManifest,
    PredictionError,
    PredictionStatus,
    case_outputs,
    check_consistent,
    is_case_done,
    prediction_status,
)
from nnseg.preprocessing import PreprocessedCase, Preprocessor
from nnseg.sharding import Shard

__all__ = ["CasePredictor", "list_input_cases", "predict_folder"]

logger = logging.getLogger(__name__)
MAX_PENDING_EXPORTS = 2


class CasePredictor(Protocol):
    """What a folder run needs of a predictor (:class:`~nnseg.inference.Predictor` is one)."""

    model: TrainedModel

    @property
    def spec(self) -> DatasetSpec:
        """The dataset's channels and labels."""
        ...

    @property
    def preprocessor(self) -> Preprocessor:
        """Preprocesses one case (shared by reader threads)."""
        ...

    def predict_logits(self, data: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Logits of one preprocessed array."""
        ...

    def export(self, logits: torch.Tensor, case: PreprocessedCase, *, with_probabilities: bool = False) -> ExportedPrediction:
        """Logits mapped back to the case's source grid."""
        ...

    def manifest_settings(self) -> dict[str, Any]:
        """The settings that change the outputs."""
        ...


def list_input_cases(input_dir: Path, spec: DatasetSpec) -> list[Case]:
    """The cases of an input folder, sorted by id, each with one file per channel.

    Raises:
        PredictionError: If the folder is missing or empty, or a case lacks channels.
    """
    if not input_dir.is_dir():
        raise PredictionError(f"input folder {input_dir} does not exist or is not a folder; check the path.")
    files: dict[str, dict[int, Path]] = {}
    for path in sorted(input_dir.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(spec.file_ending):
            continue
        parsed = parse_image_file_name(path.name, spec.file_ending)
        if parsed is None:
            warnings.warn(f"{path} is not named <case>_<XXXX>{spec.file_ending}; skipped.", stacklevel=3)
            continue
        files.setdefault(parsed[0], {})[parsed[1]] = path
    if not files:
        raise PredictionError(
            f"input folder {input_dir} holds no <case>_<XXXX>{spec.file_ending} image files; expected e.g. "
            f"case_001_0000{spec.file_ending} (the file ending comes from the model's dataset.json)."
        )
    expected = set(range(spec.num_channels))
    broken = {case: sorted(expected - set(ch)) or sorted(set(ch) - expected) for case, ch in files.items() if set(ch) != expected}
    if broken:
        shown = "; ".join(f"{case}: channel(s) {chs}" for case, chs in sorted(broken.items())[:10])
        raise PredictionError(
            f"input folder {input_dir}: {len(broken)} case(s) do not have exactly the {spec.num_channels} channel(s) "
            f"{list(spec.channel_names)} (_0000 to _{spec.num_channels - 1:04d}) the model expects; missing or extra "
            f"{shown}. Add or remove those files. Nothing was predicted."
        )
    return [Case(case, tuple(files[case][c] for c in sorted(files[case]))) for case in sorted(files)]


def _remove_stale_temporaries(output_dir: Path, case_ids: list[str]) -> None:
    """Delete hidden temporary files of these cases (left by a killed run); complete outputs are never touched."""
    owned = set(case_ids)
    for path in output_dir.glob(".*"):
        stem = path.name[1:]
        if ".tmp" in stem and any(stem.startswith(f"{case}.") for case in owned):
            path.unlink(missing_ok=True)


def _start_part(predictor: CasePredictor, cases: list[Case], output_dir: Path, shard: Shard,
                save_probabilities: bool) -> PartManifest:  # fmt: skip
    settings = {**predictor.manifest_settings(), "save_probabilities": save_probabilities}
    all_ids = tuple(case.case_id for case in cases)
    manifest = PartManifest(shard, predictor.model.identity(), settings, all_ids, tuple(shard.select(all_ids)))
    existing = PartManifest.load_all(output_dir)  # this part's own earlier manifest included
    check_consistent([manifest, *existing], output_dir)
    for other in existing:
        if _comparable(other.settings) != _comparable(settings):
            raise PredictionError(
                f"{output_dir}: {other.shard} was predicted with other settings ({_diff(other.settings, settings)}); "
                "use a new output folder for different settings."
            )
    manifest.save(output_dir)
    return manifest


def _comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings that must agree between parts (where the model files lie may change; the model identity is checked)."""
    return {key: value for key, value in settings.items() if key != "model_source"}


def _diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    old, new = _comparable(a), _comparable(b)
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys)


def predict_folder(
    predictor: CasePredictor, input_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str], *,
    shard: Shard, overwrite: bool = False, save_probabilities: bool = False, num_workers: int = 1,
    progress: bool = True,
) -> PredictionStatus:  # fmt: skip
    """Predict the cases ``shard`` owns; skip complete outputs, redo partial ones; return the run's status.

    Raises:
        PredictionError: For bad inputs or a folder holding another run (before anything is written), or at
            the end if some cases failed (the others are written; rerun to retry the failed ones).
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise PredictionError(f"num_workers must be a positive int; got {num_workers!r}.")
    source, target = Path(input_dir), Path(output_dir)
    cases = list_input_cases(source, predictor.spec)
    predictor.preprocessor  # noqa: B018 -- build it here, before the reader threads share it
    target.mkdir(parents=True, exist_ok=True)
    manifest = _start_part(predictor, cases, target, shard, save_probabilities)
    owned = [case for case in cases if case.case_id in set(manifest.owned_case_ids)]
    _remove_stale_temporaries(target, [c.case_id for c in owned])
    todo = [c for c in owned if overwrite or not is_case_done(target, c.case_id, manifest.settings)]
    logger.info("%s: %d case(s) owned, %d to predict", shard, len(owned), len(todo))
    failures = _run(predictor, todo, target, manifest, num_workers, progress)
    if failures:
        listed = "; ".join(f"{case}: {reason}" for case, reason in sorted(failures.items()))
        raise CasesFailedError(
            f"{len(failures)} of {len(todo)} case(s) failed ({shard}): {listed}. Rerun to retry them.", failures
        )
    return prediction_status(target)


def _run(predictor: CasePredictor, todo: list[Case], target: Path, manifest: PartManifest, num_workers: int,
         progress: bool) -> dict[str, str]:  # fmt: skip
    failures: dict[str, str] = {}
    with_probabilities = bool(manifest.settings.get("save_probabilities"))
    with ThreadPoolExecutor(num_workers) as reader, ThreadPoolExecutor(1) as writer, \
            tqdm(total=len(todo), desc=f"predict {manifest.shard}", unit="case", disable=not progress) as bar:  # fmt: skip
        loading: deque[tuple[Case, Future[PreprocessedCase]]] = deque()
        exporting: deque[tuple[str, Future[None]]] = deque()
        queue = iter(todo)

        def refill() -> None:
            while len(loading) < num_workers + 1 and (case := next(queue, None)) is not None:
                loading.append((case, reader.submit(predictor.preprocessor.preprocess_case, case)))

        refill()
        while loading:
            case, future = loading.popleft()
            refill()
            try:
                preprocessed = future.result()
                logits = predictor.predict_logits(preprocessed.data)
            except Exception as err:  # one bad case must not stop the others; reported at the end
                failures[case.case_id] = f"{type(err).__name__}: {err}"
                bar.update()
                continue
            output = case_outputs(target, case.case_id, manifest.settings)[0]
            export: Callable[[], None] = _exporter(predictor, logits, preprocessed, output, with_probabilities)
            exporting.append((case.case_id, writer.submit(export)))
            _drain(exporting, failures, bar, keep=MAX_PENDING_EXPORTS)
        _drain(exporting, failures, bar, keep=0)
    return failures


def _exporter(predictor: CasePredictor, logits: torch.Tensor, case: PreprocessedCase, output: Path,
              probabilities: bool) -> Callable[[], None]:  # fmt: skip
    def export() -> None:
        write_outputs(predictor.export(logits, case, with_probabilities=probabilities), case, output)

    return export


def _drain(exporting: deque[tuple[str, Future[None]]], failures: dict[str, str], bar: tqdm, keep: int) -> None:
    while len(exporting) > keep:
        case_id, future = exporting.popleft()
        try:
            future.result()
        except Exception as err:  # reported at the end, with the case id
            failures[case_id] = f"{type(err).__name__}: {err}"
        bar.update()
