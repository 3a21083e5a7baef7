"""Run one function over many cases, in this process and/or in a bounded pool of helper processes.

Cases are streamed: at most ``2`` per helper are submitted at any time, so memory stays bounded on datasets
of any size. Results arrive in completion order together with their index; callers place them by index, so
the outcome does not depend on the number of workers.

With a ``local`` function and ``num_workers=N >= 2`` the calling process is one of the N workers: it
computes cases itself while ``N - 1`` helpers start (a spawned helper spends about a second importing
numpy and SimpleITK; on a small dataset that is as long as the whole work). The helpers are started only
after the caller's first case, and only if the rest would keep the caller alone busy for more than
``MIN_HELPER_WORK_S`` (they would not pay for their start-up otherwise). When no case is left to hand out,
the caller computes the helpers' unfinished cases itself instead of waiting (a helper may still be starting,
or slow on a busy machine) and ends helpers whose results are no longer needed. Without ``local`` the caller
only schedules, so a task that kills its process (the out-of-memory killer, ``os._exit``) never kills the
caller.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from tqdm.auto import tqdm

from nnseg.errors import FingerprintError

__all__ = ["run_cases"]

TaskT = TypeVar("TaskT")
ResultT = TypeVar("ResultT")
IN_FLIGHT_PER_WORKER = 2
MIN_HELPER_WORK_S = 2.0
"""Seconds of remaining work (estimated from the caller's first case) below which no helper is started."""


def run_cases(
    function: Callable[[TaskT], ResultT],
    tasks: Sequence[TaskT],
    names: Sequence[str],
    *,
    num_workers: int,
    progress: bool,
    local: Callable[[int], ResultT] | None = None,
) -> Iterator[tuple[int, ResultT]]:
    """Yield ``(index, result of tasks[index])`` for every task, in completion order.

    Args:
        function: A module-level (picklable) function, run in helper processes.
        tasks: Picklable task descriptions.
        names: One case id per task, used in error messages.
        num_workers: ``<= 1`` runs in this process; more uses ``spawn`` helper processes.
        progress: Show a tqdm progress bar on stderr.
        local: Computes the task of an index in this process (same result as ``function``); given, this
            process works as one of the ``num_workers`` and runs every task when ``num_workers <= 1``.

    Raises:
        FingerprintError: If a helper process dies, naming the cases it may have been working on.
        Exception: Whatever ``function`` or ``local`` raises, unchanged.
    """
    in_caller = local if local is not None else (lambda index: function(tasks[index]))
    if num_workers <= 1 or len(tasks) <= 1:
        helpers = 0
    else:  # with local, this process is one worker and takes at least one case
        helpers = min(num_workers - 1, len(tasks) - 1) if local is not None else min(num_workers, len(tasks))
    with tqdm(total=len(tasks), desc="fingerprint", unit="case", disable=not progress) as bar:
        if helpers <= 0:
            for index in range(len(tasks)):
                yield index, in_caller(index)
                bar.update()
            return
        queue = deque(range(len(tasks)))
        if local is not None:
            start, index = time.perf_counter(), queue.pop()
            yield index, local(index)
            bar.update()
            if len(queue) * (time.perf_counter() - start) < MIN_HELPER_WORK_S:
                helpers = 0
        items = _run_shared(function, tasks, names, queue, helpers, local, num_workers)
        for item in items:
            yield item
            bar.update()


def _run_shared(
    function: Callable[[TaskT], ResultT],
    tasks: Sequence[TaskT],
    names: Sequence[str],
    queue: deque[int],
    helpers: int,
    local: Callable[[int], ResultT] | None,
    num_workers: int,
) -> Iterator[tuple[int, ResultT]]:
    """Keep ``helpers`` processes busy and, with ``local``, compute a case here between two looks at them."""
    if helpers <= 0 and local is not None:
        while queue:
            index = queue.pop()
            yield index, local(index)
        return
    pool = ProcessPoolExecutor(helpers, mp_context=multiprocessing.get_context("spawn"))
    pending: dict[Future[ResultT], int] = {}
    abandoned: list[Future[ResultT]] = []
    warm = False
    try:
        while queue or pending:
            # one case per helper until one has answered: a case queued behind a helper that is still
            # starting would wait while this process could have computed it
            limit = helpers * (IN_FLIGHT_PER_WORKER if warm or local is None else 1)
            while queue and len(pending) < limit:
                index = queue.popleft()
                pending[pool.submit(function, tasks[index])] = index
            timeout: float | None = None
            if local is not None and queue:
                index = queue.pop()  # from the end: the helpers take the front
                yield index, local(index)
                timeout = 0.0
            elif local is not None and (unfinished := [f for f in pending if not f.done()]):
                # nothing left to hand out: compute a helper's unfinished case here (the last handed out,
                # the least likely to be under way) instead of waiting for a busy or still starting helper
                future = max(unfinished, key=pending.__getitem__)
                index = pending.pop(future)
                abandoned.append(future)
                yield index, local(index)
                timeout = 0.0
            if not pending:
                continue
            finished, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            warm = warm or bool(finished)
            for future in sorted(finished, key=pending.__getitem__):
                result = future.result()
                yield pending.pop(future), result
    except BrokenProcessPool as err:
        in_flight = sorted(names[i] for i in pending.values())
        raise FingerprintError(
            f"a fingerprint worker process died (often the out-of-memory killer) while computing case(s) "
            f"{', '.join(repr(n) for n in in_flight)}; rerun with fewer workers (num_workers={num_workers} now). "
            "With a cache_dir, finished cases are kept."
        ) from err
    finally:
        if any(not future.done() for future in abandoned):
            _stop_helpers(pool)  # their results are not needed: this process computed those cases
        pool.shutdown(wait=True, cancel_futures=True)


def _stop_helpers(pool: ProcessPoolExecutor) -> None:
    """End helper processes whose cases this process has computed instead (their results are not needed)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # CPython's pool keeps them there
        process.terminate()
