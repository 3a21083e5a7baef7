"""``preprocess_dataset``: the dataset-level runner around :class:`Preprocessor` and :class:`PreprocessedStore`.

What it adds to the pure per-case core: worker processes, a progress bar, resume (complete cases are
skipped, partial ones are cleaned and redone), sharding, and failure reporting that never throws away
finished work.

Memory stays bounded whatever the dataset size: cases are handed to the pool a few at a time
(``MAX_IN_FLIGHT_PER_WORKER`` per worker), each worker reads, preprocesses and writes its case itself, and
only a case id and an error string travel back. Helper processes are started with ``spawn`` and rebuilt from
JSON values (the plan's standalone JSON and ``dataset.json`` content), so they inherit no state of the caller;
each limits its own numeric libraries to one thread (it shares the machine with the other workers).

With ``num_workers=N`` (N >= 2) the calling process is one of the N workers: it preprocesses cases itself
while ``N - 1`` helpers start. A spawned helper spends one to three seconds importing numpy, scipy, blosc2
and SimpleITK before its first case; with N helpers the caller would sit idle meanwhile, and two workers
were measured slower than one on small datasets (docs/benchmarks.md, "Where the time goes").
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED as _FIRST_COMPLETED
from concurrent.futures import Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol, TypeVar

from nnseg._checks import parse_int
from nnseg._lock import WorkLock
from nnseg.dataset import Case, DatasetSpec
from nnseg.errors import NnsegError, PreprocessingError, PreprocessingWriteError
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing._preprocessor import Preprocessor
from nnseg.preprocessing._store import PreprocessedStore
from nnseg.sharding import Shard

__all__ = [
    "MAX_IN_FLIGHT_PER_WORKER",
    "PreprocessingError",
    "PreprocessingWriteError",
    "preprocess_dataset",
    "run_bounded",
]

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT_PER_WORKER = 2
MAX_POOL_DEATHS_PER_CASE = 2
DISK_FULL = "the disk holding the store is full"
SIZE_LIMIT = "a file-size limit stopped a write to the store"
NOT_STARTED = "not started: preprocessing stopped because a write to the store failed (disk full or file-size limit)"
T = TypeVar("T")
R = TypeVar("R")
Job = tuple[str, tuple[str, ...], str | None]  # (case_id, image paths, label path)
WorkerArgs = tuple[dict[str, Any], dict[str, Any], str]  # (plan JSON, dataset.json dict, store folder)


class _Dataset(Protocol):
    @property
    def spec(self) -> DatasetSpec: ...

    @property
    def cases(self) -> tuple[Case, ...]: ...


# ----------------------------------------------------------------------------------- the per-case job
class _CaseWriter:
    """Preprocess one case and write it to the store; return None or the reason it failed."""

    def __init__(self, plan_json: dict[str, Any], spec_json: dict[str, Any], store_root: str) -> None:
        plan = ConfigurationPlan.from_json(plan_json)
        self.preprocessor = Preprocessor(plan, DatasetSpec.from_dict(spec_json))
        self.store = PreprocessedStore(store_root)

    def __call__(self, job: Job) -> str | None:
        case_id, image_paths, label_path = job
        try:
            case = Case(case_id, tuple(Path(p) for p in image_paths), None if label_path is None else Path(label_path))
            self.store.write_case(self.preprocessor.preprocess_case(case))
        except Exception as err:  # every failure is reported with its case id; the run goes on
            return _reason(err)
        return None


def _reason(err: BaseException) -> str:
    """``"Type: message"``, plus where it was raised for errors nnseg did not raise on purpose."""
    reason = f"{type(err).__name__}: {err}"
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f"{DISK_FULL} ({reason})"
    if isinstance(err, OSError) and err.errno in (errno.EFBIG, errno.EDQUOT):
        return f"{SIZE_LIMIT} ({reason})"
    frames = traceback.extract_tb(err.__traceback__)
    if not isinstance(err, NnsegError) and frames:
        reason += f" (raised at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})"
    return reason


_WORKER: _CaseWriter | None = None


def _init_worker(plan_json: dict[str, Any], spec_json: dict[str, Any], store_root: str) -> None:
    global _WORKER
    limit_worker_threads()
    _WORKER = _CaseWriter(plan_json, spec_json, store_root)


def limit_worker_threads() -> None:
    """Limit this (spawned worker) process's numeric libraries to one thread each.

    Workers run side by side, one per core: a library that starts a thread per core in every worker
    oversubscribes the machine. Only ever called in worker processes nnseg started itself, never in the
    caller's process, and it does not read or change environment variables.
    """
    import SimpleITK as sitk

    # blosc2 is not touched: nnseg passes its thread counts per call (its global count is written into file
    # headers), and compression always runs on one thread
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    if "torch" in sys.modules:  # never imported for that alone
        sys.modules["torch"].set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits  # optional: BLAS / OpenMP pools of numpy and scipy
    except ImportError:
        return
    threadpool_limits(1)


def _work(job: Job) -> str | None:
    if _WORKER is None:  # invariant: set by the pool initializer
        raise RuntimeError("preprocessing worker used before its initializer ran")
    return _WORKER(job)


# ----------------------------------------------------------------------------------- scheduling
def run_bounded(
    submit: Callable[[T], Future[R]], queue: deque[T], *, max_in_flight: int
) -> Iterator[tuple[T, Future[R]]]:
    """Submit items from ``queue`` keeping at most ``max_in_flight`` unfinished, yielding each as it finishes.

    An item leaves the queue only once it was submitted. If ``submit`` raises :class:`BrokenProcessPool`,
    nothing more is submitted, the unfinished items are still yielded (their futures hold the error) and the
    rest stays in ``queue``.

    Args:
        submit: Starts one item, e.g. ``functools.partial(pool.submit, fn)``.
        queue: The items; consumed from the left.
        max_in_flight: Upper bound on submitted-but-not-yet-yielded items (>= 1).

    Yields:
        ``(item, future)`` in completion order; ``future`` is done.
    """
    pending: dict[Future[R], T] = {}
    broken = False
    while pending or (queue and not broken):
        while queue and not broken and len(pending) < max_in_flight:
            try:
                future = submit(queue[0])
            except BrokenProcessPool:
                broken = True
                break
            pending[future] = queue.popleft()
        if not pending:
            break
        finished, _ = wait(pending, return_when=_FIRST_COMPLETED)
        for future in finished:
            yield pending.pop(future), future


def _make_pool(num_workers: int, worker_args: WorkerArgs) -> Executor:
    # spawn: the workers start clean (no copy of the caller's threads, torch state or open files)
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(num_workers, mp_context=context, initializer=_init_worker, initargs=worker_args)


def _submitter(pool: Executor) -> Callable[[Job], Future[str | None]]:
    """Bind ``pool`` now (a lambda in the loop would see a later pool)."""
    return lambda job: pool.submit(_work, job)


def _share_work(
    pool: Executor,
    queue: deque[Job],
    max_in_flight: int,
    local: Callable[[Job], str | None],
    record: Callable[[str, str | None], bool],
) -> Iterator[tuple[Job, Future[str | None]]]:
    """Like :func:`run_bounded`, but this process also takes cases from ``queue`` and runs them with ``local``.

    Between two local cases the pool is refilled and its finished cases are yielded; local cases are
    recorded here. If the pool breaks, this process works through the rest of the queue alone.
    """
    pending: dict[Future[str | None], Job] = {}
    broken, warm = False, False
    while pending or queue:
        # one case per helper until a helper has answered: a case queued behind a helper that is still
        # starting would wait seconds while this process could have done it
        while queue and not broken and len(pending) < (max_in_flight if warm else max(1, max_in_flight // 2)):
            try:
                future = pool.submit(_work, queue[0])
            except BrokenProcessPool:
                broken = True
                break
            pending[future] = queue.popleft()
        timeout: float | None = None
        if queue:
            job = queue.popleft()
            if not record(job[0], local(job)):
                _give_up(queue, record)
            timeout = 0.0
        if not pending:
            continue
        finished, _ = wait(pending, timeout=timeout, return_when=_FIRST_COMPLETED)
        warm = warm or bool(finished)
        for future in finished:
            yield pending.pop(future), future


def _run_pool(
    jobs: list[Job],
    make_pool: Callable[[], Executor],
    max_in_flight: int,
    record: Callable[[str, str | None], bool],
    local: Callable[[Job], str | None] | None = None,
) -> None:
    """Run ``jobs`` on pools from ``make_pool`` (and in this process with ``local``); a new pool replaces one
    whose worker died.

    Cases that were in flight when a worker died are retried in the next pool; a case in flight during
    ``MAX_POOL_DEATHS_PER_CASE`` deaths is recorded as failed.
    """
    queue: deque[Job] = deque(jobs)
    deaths: dict[str, int] = {}
    while queue:
        before = len(queue)
        pool = make_pool()
        try:
            finishing = (run_bounded(_submitter(pool), queue, max_in_flight=max_in_flight) if local is None
                         else _share_work(pool, queue, max_in_flight, local, record))  # fmt: skip
            for job, future in finishing:
                try:
                    if not record(job[0], future.result()):
                        _give_up(queue, record)
                except BrokenProcessPool:
                    deaths[job[0]] = deaths.get(job[0], 0) + 1
                    if deaths[job[0]] >= MAX_POOL_DEATHS_PER_CASE:
                        record(job[0], "a worker process died while preprocessing this case (out of memory, or a "
                                       "crash in a library); try fewer workers or check the case's files")  # fmt: skip
                    else:
                        queue.append(job)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if len(queue) >= before:  # the pool could not take a single case: give up on the rest
            _give_up(queue, record, "no worker process could be started for this case")


def _give_up(queue: deque[Job], record: Callable[[str, str | None], bool], reason: str = NOT_STARTED) -> None:
    """Record every queued job as failed with ``reason`` and empty the queue."""
    while queue:
        record(queue.popleft()[0], reason)


# ----------------------------------------------------------------------------------- the runner
def preprocess_dataset(
    dataset: _Dataset,
    plan: ConfigurationPlan,
    store_dir: str | os.PathLike[str],
    *,
    num_workers: int = 1,
    shard: Shard | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PreprocessedStore:
    """Preprocess every training case of ``dataset`` into a store, resuming whatever is already there.

    Complete cases are skipped; partial ones (a crash or kill mid-write) have their pieces removed and
    are redone. Nothing else in the folder is ever deleted.

    Args:
        dataset: The raw dataset (:class:`~nnseg.dataset.RawDataset`).
        plan: The configuration to preprocess (``plans["3d_fullres"]``).
        store_dir: The store folder, created if needed. Plans with identical preprocessing may share it.
        num_workers: Worker processes; 0 or 1 runs in this process. At most
            ``MAX_IN_FLIGHT_PER_WORKER * num_workers`` cases are in flight at any time.
        shard: Process only this part of the cases (sorted ids, strided; nnU-Net's ``-num_parts/-part_id``).
        overwrite: Accept a store built for other preprocessing (its manifest is replaced) and redo every
            case of this shard, complete or not.
        progress: Show a progress bar (tqdm, on stderr).

    Returns:
        The store.

    Raises:
        StoreError: If the store holds other preprocessing and ``overwrite`` is False.
        PreprocessingError: After all other cases were written, listing every failed case id and reason.
        PlansError: If the plan does not fit the dataset (channel count, unknown scheme).
        ConfigError: If ``num_workers`` is negative.
        LockError: If another live process is preprocessing the same shard of this store (it is named).
    """
    parse_int("preprocess_dataset", "num_workers", num_workers, minimum=0)  # 0 or 1: work in this process
    Preprocessor(plan, dataset.spec)  # fail on a plan that does not fit before touching the disk
    store = PreprocessedStore(store_dir)
    store.initialise(plan, dataset.spec, overwrite=overwrite)
    part = shard or Shard.whole()
    lock = WorkLock(store.root / f".preprocess.part_{part.index}_of_{part.count}.lock",
                    f"preprocessing part {part.index + 1} of {part.count} of store {store.root}")  # fmt: skip
    with lock:  # a second process on the same shard is refused, naming the first
        _preprocess_locked(dataset, plan, store, part, num_workers=num_workers, overwrite=overwrite,
                           progress=progress)  # fmt: skip
    return store


def _preprocess_locked(
    dataset: _Dataset, plan: ConfigurationPlan, store: PreprocessedStore, shard: Shard, *, num_workers: int,
    overwrite: bool, progress: bool,
) -> None:  # fmt: skip
    cases = {case.case_id: case for case in dataset.cases}
    owned = shard.select(cases)
    status = store.status(owned, verify=not overwrite)  # checksums: a damaged case is redone, not kept
    todo = list(owned) if overwrite else list(status.todo)
    logger.info("%s: %d of %d case(s) complete, %d to do (%s)", store.root, len(owned) - len(status.todo),
                len(owned), len(todo), shard)  # fmt: skip
    store.discard_cases(status.stale)  # the pieces of partial or damaged cases, and only theirs
    jobs: list[Job] = [_job(cases[case_id]) for case_id in todo]
    worker_args: WorkerArgs = (plan.to_json(standalone=True), dataset.spec.to_dict(), str(store.root))
    failures = _run_jobs(jobs, worker_args, num_workers, progress=progress, desc=f"preprocess {plan.name}")
    if failures:
        _raise_failures(failures, len(jobs), store.root)


def _job(case: Case) -> Job:
    label = None if case.label_path is None else str(case.label_path)
    return case.case_id, tuple(str(p) for p in case.image_paths), label


def _run_jobs(
    jobs: list[Job], worker_args: WorkerArgs, num_workers: int, *, progress: bool, desc: str
) -> dict[str, str]:
    """Run every job (in this process or a pool) and return case id -> reason for the failures."""
    from tqdm.auto import tqdm

    failures: dict[str, str] = {}
    with tqdm(total=len(jobs), desc=desc, unit="case", disable=not progress) as bar:

        def record(case_id: str, error: str | None) -> bool:
            """Note one finished case; return False when the run should stop (the disk is full)."""
            if error is not None:
                failures[case_id] = error
                logger.error("case %r failed: %s", case_id, error)
            bar.update(1)
            return error is None or not error.startswith((DISK_FULL, SIZE_LIMIT))

        if num_workers <= 1 or len(jobs) <= 1:
            writer = _CaseWriter(*worker_args)
            queue = deque(jobs)
            while queue:
                job = queue.popleft()
                if not record(job[0], writer(job)):
                    _give_up(queue, record)
        elif jobs:
            helpers = min(num_workers, len(jobs)) - 1  # this process is the other worker
            _run_pool(jobs, lambda: _make_pool(helpers, worker_args), MAX_IN_FLIGHT_PER_WORKER * helpers, record,
                      local=_CaseWriter(*worker_args))  # fmt: skip
    return failures


def _raise_failures(failures: Mapping[str, str], total: int, root: Path) -> None:
    full = any(reason.startswith(DISK_FULL) for reason in failures.values())
    limit = any(reason.startswith(SIZE_LIMIT) for reason in failures.values())
    message = _failure_message(failures, total, root, full=full, limit=limit)
    if not (full or limit):
        raise PreprocessingError(message, failures)
    error = PreprocessingWriteError(message, failures)
    error.errno = errno.ENOSPC if full else errno.EFBIG
    raise error


def _failure_message(failures: Mapping[str, str], total: int, root: Path, *, full: bool, limit: bool) -> str:
    lines = "\n".join(f"  - {case_id}: {reason}" for case_id, reason in sorted(failures.items()))
    head = ""
    if full:
        head = f"the disk holding store {root} is full; free space and run again. "
    elif limit:
        head = f"a file-size limit (`ulimit -f`) stopped writing store {root}; raise the limit and run again. "
    return (
        f"{head}preprocessing failed for {len(failures)} of {total} case(s) written to store {root}:\n{lines}\n"
        f"The other {total - len(failures)} case(s) are complete and stay. Fix the inputs listed above and run "
        "again; complete cases are skipped."
    )
