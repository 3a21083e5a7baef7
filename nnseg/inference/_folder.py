"""``predict_folder``: predict a folder of cases, one shard at a time, so that no case is ever lost.

Rules:

* the input cases are the ``<case>_<XXXX><ending>`` files of the input folder; a case without exactly the
  channels of ``dataset.json`` (or, for PNG, BMP and TIFF, one colour file ``<case>_0000`` holding them all)
  fails (named at the end) while the others are predicted;
* a part owns ``Shard(part_id, num_parts).select(sorted case ids)``, nnU-Net's ``-num_parts/-part_id``;
* a part runs under a lock (``nnseg_parts/.part_K_of_N.lock``): a second process of the same part is refused
  with a :class:`~nnseg.errors.LockError` naming the first; a dead process's lock is taken over;
* the part writes its own manifest first (``nnseg_parts/part_K_of_N.json``), refusing an output folder that
  holds parts of another model, other settings or another part count;
* every output is written atomically and verified, the label map last, then recorded with its checksum in the
  manifest; a case is skipped (unless ``overwrite``) only when its record exists and the checksums match, so
  foreign or damaged outputs are redone; temporary files a killed run left behind are removed;
* a failed write (disk full, file-size limit) stops the run with a :class:`~nnseg.errors.WriteError`; a bad
  input fails its case only; SIGINT / SIGTERM stop between cases (:mod:`nnseg.inference._stop`);
* while the network works on one case, the next ones are preprocessed and the previous one is exported in
  background threads.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from nnseg._lock import WorkLock
from nnseg.dataset import Case, DatasetSpec
from nnseg.dataset._case import is_colour_format, parse_image_file_name
from nnseg.errors import WriteError
from nnseg.inference._export import ExportedPrediction, write_outputs
from nnseg.inference._model import TrainedModel
from nnseg.inference._parts import (
    PARTS_DIR,
    CasesFailedError,
    PartManifest,
    PredictionError,
    PredictionStatus,
    case_outputs,
    case_problem,
    check_consistent,
    prediction_status,
    record_case,
)
from nnseg.inference._stop import StopOnSignal, stopped_error
from nnseg.preprocessing import PreprocessedCase
from nnseg.sharding import Shard

__all__ = ["CasePredictor", "list_input_cases", "predict_folder"]

logger = logging.getLogger(__name__)
MAX_PENDING_EXPORTS = 2


class CasePreprocessor(Protocol):
    """Reads and preprocesses one case (:class:`~nnseg.preprocessing.Preprocessor` is one)."""

    def preprocess_case(self, case: Case) -> PreprocessedCase:
        """The network input of ``case`` with its properties."""
        ...


class CasePredictor(Protocol):
    """What a folder run needs of a predictor (:class:`~nnseg.inference.Predictor` is one)."""

    model: TrainedModel

    @property
    def spec(self) -> DatasetSpec:
        """The dataset's channels and labels."""
        ...

    @property
    def preprocessor(self) -> CasePreprocessor:
        """Preprocesses one case (shared by reader threads)."""
        ...

    def predict_logits(self, data: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Logits of one preprocessed array."""
        ...

    def export(
        self, logits: torch.Tensor, case: PreprocessedCase, *, with_probabilities: bool = False
    ) -> ExportedPrediction:
        """Logits mapped back to the case's source grid."""
        ...

    def manifest_settings(self) -> dict[str, Any]:
        """The settings that change the outputs."""
        ...


def _scan_inputs(input_dir: Path, spec: DatasetSpec) -> tuple[list[Case], dict[str, str]]:
    """The complete cases of an input folder, and the incomplete ones with what is wrong."""
    if not input_dir.is_dir():
        raise PredictionError(f"input folder {input_dir} does not exist or is not a folder; check the path.")
    files: dict[str, dict[int, Path]] = {}
    for path in sorted(input_dir.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(spec.file_ending):
            continue
        parsed = parse_image_file_name(path.name, spec.file_ending)
        if parsed is None:
            warnings.warn(f"{path} is not named <case>_<XXXX>{spec.file_ending}; skipped.", stacklevel=4)
            continue
        files.setdefault(parsed[0], {})[parsed[1]] = path
    if not files:
        raise PredictionError(
            f"input folder {input_dir} holds no <case>_<XXXX>{spec.file_ending} image files; expected e.g. "
            f"case_001_0000{spec.file_ending} (the file ending comes from the model's dataset.json)."
        )
    expected = set(range(spec.num_channels))
    broken = {}
    # PNG, BMP, TIFF: one colour file <case>_0000 may hold every channel (counted when it is read)
    one_file_ok = spec.num_channels > 1 and is_colour_format(spec.file_ending)
    for case, channels in sorted(files.items()):
        missing, extra = sorted(expected - set(channels)), sorted(set(channels) - expected)
        if (missing or extra) and not (one_file_ok and set(channels) == {0}):
            broken[case] = (f"{'missing' if missing else 'extra'} channel file(s) {missing or extra}; the model expects "
                            f"exactly {spec.num_channels} channel(s) {list(spec.channel_names)} (_0000 to "
                            f"_{spec.num_channels - 1:04d}{', or one colour file _0000' if one_file_ok else ''})")  # fmt: skip
    good = [
        Case(case, tuple(files[case][c] for c in sorted(files[case]))) for case in sorted(files) if case not in broken
    ]
    return good, broken


def list_input_cases(input_dir: Path, spec: DatasetSpec) -> list[Case]:
    """The cases of an input folder, sorted by id, each with one file per channel (or one colour file).

    With a PNG, BMP or TIFF model of several channels, a case may give all of them in one colour file
    ``<case>_0000`` (e.g. an RGB photo); its colours are counted against the channels when it is read.

    Raises:
        PredictionError: If the folder is missing or empty, or a case lacks channels.
    """
    cases, broken = _scan_inputs(input_dir, spec)
    if broken:
        raise PredictionError(f"input folder {input_dir}: {len(broken)} case(s) do not have the right channels: "
                              f"{_listed(broken)}. Add or remove those files.")  # fmt: skip
    return cases


def _listed(reasons: Mapping[str, str]) -> str:
    return "; ".join(f"{case}: {reason}" for case, reason in sorted(reasons.items()))


def _remove_stale_temporaries(output_dir: Path, case_ids: list[str]) -> None:
    """Delete hidden temporary files of these cases (left by a killed run); complete outputs are never touched."""
    owned = set(case_ids)
    for path in output_dir.glob(".*"):
        stem = path.name[1:]
        if ".tmp" in stem and any(stem.startswith(f"{case}.") for case in owned):
            path.unlink(missing_ok=True)


def _start_part(predictor: CasePredictor, all_ids: tuple[str, ...], output_dir: Path, shard: Shard,
                save_probabilities: bool) -> PartManifest:  # fmt: skip
    settings = {**predictor.manifest_settings(), "save_probabilities": save_probabilities}
    manifest = PartManifest(shard, predictor.model.identity(), settings, all_ids, tuple(shard.select(all_ids)))
    existing = PartManifest.load_all(output_dir)  # this part's own earlier manifest included
    check_consistent([manifest, *existing], output_dir)
    for other in existing:
        if _comparable(other.settings) != _comparable(settings):
            raise PredictionError(
                f"{output_dir}: {other.shard} was predicted with other settings ({_diff(other.settings, settings)}); "
                "use a new output folder for different settings."
            )
    own = [other for other in existing if other.shard == shard]
    manifest = dataclasses.replace(manifest, done=own[0].done if own else {})  # records of earlier runs stay valid
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
    """Predict the cases ``shard`` owns; skip finished outputs, redo partial, damaged or foreign ones.

    SIGINT and SIGTERM (when called from the main thread) stop the run between cases: the cases in flight are
    finished and recorded, nothing is half-written, and :class:`PredictionStopped` is raised; a second signal
    stops at once (temporary files are removed by the next run).

    Raises:
        PredictionError: For a missing or empty input folder, or a folder holding another run (before anything
            is written).
        LockError: If another process is predicting the same part into the same folder.
        WriteError: If an output cannot be written (disk full, file-size limit); the run stops, finished cases
            are kept.
        CasesFailedError: At the end, if some cases failed (bad input files; the others are written).
        PredictionStopped: After a SIGINT or SIGTERM, once the cases in flight are written.
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise PredictionError(f"num_workers must be a positive int; got {num_workers!r}.")
    source, target = Path(input_dir), Path(output_dir)
    cases, broken = _scan_inputs(source, predictor.spec)
    if not cases:
        raise PredictionError(f"input folder {source}: no case has the channels the model expects: {_listed(broken)}. "
                              "Add or remove those files. Nothing was predicted.")  # fmt: skip
    predictor.preprocessor  # noqa: B018 -- build it here, before the reader threads share it
    (target / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    lock_name = PartManifest.path(target, shard).with_suffix(".lock").name
    with WorkLock(target / PARTS_DIR / f".{lock_name}", f"prediction of {shard} into {target}"):
        all_ids = tuple(sorted([c.case_id for c in cases] + list(broken)))
        manifest = _start_part(predictor, all_ids, target, shard, save_probabilities)
        owned = set(manifest.owned_case_ids)
        _remove_stale_temporaries(target, sorted(owned))
        failures = {case: reason for case, reason in broken.items() if case in owned}
        todo = [c for c in cases if c.case_id in owned and (overwrite or _needs_work(target, c.case_id, manifest))]
        logger.info("%s: %d case(s) owned, %d to predict", shard, len(owned), len(todo))
        with StopOnSignal() as stop:
            failures.update(_run(predictor, todo, target, manifest, (num_workers, progress), stop))
        if stop.signum is not None:
            raise stopped_error(stop.signum, shard, target)
    if failures:
        raise CasesFailedError(f"{len(failures)} of {len(todo) + len(broken.keys() & owned)} case(s) failed ({shard}): "
                               f"{_listed(failures)}. Fix those inputs and rerun to predict them (finished cases are "
                               "kept); to leave them out, remove them and use a new output folder.", failures)  # fmt: skip
    return prediction_status(target)


def _needs_work(target: Path, case_id: str, manifest: PartManifest) -> bool:
    problem = case_problem(target, case_id, manifest)
    if problem not in (None, "missing"):
        logger.warning("%s: predicting %s again: %s", target, case_id, problem)
    return problem is not None


def _run(predictor: CasePredictor, todo: list[Case], target: Path, manifest: PartManifest, options: tuple[int, bool],
         stop: StopOnSignal) -> dict[str, str]:  # fmt: skip
    num_workers, progress = options
    failures: dict[str, str] = {}
    recorder = _Recorder(target, manifest)
    with ThreadPoolExecutor(num_workers) as reader, ThreadPoolExecutor(1) as writer, \
            tqdm(total=len(todo), desc=f"predict {manifest.shard}", unit="case", disable=not progress) as bar:  # fmt: skip
        loading: deque[tuple[Case, Future[PreprocessedCase]]] = deque()
        exporting: deque[tuple[str, Future[None]]] = deque()
        queue = iter(todo)

        def refill() -> None:
            while len(loading) < num_workers + 1 and (case := next(queue, None)) is not None:
                loading.append((case, reader.submit(predictor.preprocessor.preprocess_case, case)))

        try:
            refill()
            while loading and stop.signum is None:
                case, future = loading.popleft()
                refill()
                try:
                    preprocessed = future.result()
                    logits = predictor.predict_logits(preprocessed.data)
                except Exception as err:  # one bad case must not stop the others; reported at the end
                    failures[case.case_id] = f"{type(err).__name__}: {err}"
                    bar.update()
                    continue
                export = _exporter(predictor, logits, preprocessed, case.case_id, recorder)
                exporting.append((case.case_id, writer.submit(export)))
                _drain(exporting, failures, bar, keep=MAX_PENDING_EXPORTS)
            _drain(exporting, failures, bar, keep=0)
        finally:  # a stop or a failed write: cases not started are dropped, those being written finish atomically
            for pending in [f for _, f in loading] + [f for _, f in exporting]:
                pending.cancel()
    return failures


class _Recorder:
    """Records each written case in the part manifest (called from the one writer thread)."""

    def __init__(self, target: Path, manifest: PartManifest) -> None:
        self.target = target
        self.manifest = manifest
        self._lock = threading.Lock()

    def record(self, case_id: str) -> None:
        with self._lock:
            self.manifest = record_case(self.target, case_id, self.manifest)


def _exporter(predictor: CasePredictor, logits: torch.Tensor, case: PreprocessedCase, case_id: str,
              recorder: _Recorder) -> Callable[[], None]:  # fmt: skip
    settings = recorder.manifest.settings
    output = case_outputs(recorder.target, case_id, settings)[0]

    def export() -> None:
        result = predictor.export(logits, case, with_probabilities=bool(settings.get("save_probabilities")))
        write_outputs(result, case, output)
        recorder.record(case_id)

    return export


def _drain(exporting: deque[tuple[str, Future[None]]], failures: dict[str, str], bar: tqdm, keep: int) -> None:
    for _, pending in exporting:  # a failed write stops the run now, not after more network work
        if pending.done() and not pending.cancelled() and isinstance(error := pending.exception(), WriteError):
            raise error
    while len(exporting) > keep:
        case_id, future = exporting.popleft()
        try:
            future.result()
        except WriteError:  # the disk is full or a limit is hit: the next cases would fail alike, so stop
            raise
        except Exception as err:  # reported at the end, with the case id
            failures[case_id] = f"{type(err).__name__}: {err}"
        bar.update()
