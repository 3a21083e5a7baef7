"""Run one function over many cases, in this process or in a bounded pool of worker processes.

Cases are streamed: at most ``2 * num_workers`` are submitted at any time, so memory stays bounded on
datasets of any size. Results arrive in completion order together with their index; callers place them by
index, so the outcome does not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
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


def run_cases(
    function: Callable[[TaskT], ResultT],
    tasks: Sequence[TaskT],
    names: Sequence[str],
    *,
    num_workers: int,
    progress: bool,
) -> Iterator[tuple[int, ResultT]]:
    """Yield ``(index, function(tasks[index]))`` for every task, in completion order.

    Args:
        function: A module-level (picklable) function.
        tasks: Picklable task descriptions.
        names: One case id per task, used in error messages.
        num_workers: ``<= 1`` runs in this process; more uses a ``spawn`` process pool.
        progress: Show a tqdm progress bar on stderr.

    Raises:
        FingerprintError: If a worker process dies, naming the cases it may have been working on.
        Exception: Whatever ``function`` raises, unchanged.
    """
    with tqdm(total=len(tasks), desc="fingerprint", unit="case", disable=not progress) as bar:
        if num_workers <= 1 or len(tasks) <= 1:
            for index, task in enumerate(tasks):
                yield index, function(task)
                bar.update()
            return
        for item in _run_in_pool(function, tasks, names, min(num_workers, len(tasks))):
            yield item
            bar.update()


def _run_in_pool(
    function: Callable[[TaskT], ResultT], tasks: Sequence[TaskT], names: Sequence[str], num_workers: int
) -> Iterator[tuple[int, ResultT]]:
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(num_workers, mp_context=context)
    pending: dict[Future[ResultT], int] = {}
    next_index = 0
    try:
        while next_index < len(tasks) or pending:
            while next_index < len(tasks) and len(pending) < IN_FLIGHT_PER_WORKER * num_workers:
                pending[pool.submit(function, tasks[next_index])] = next_index
                next_index += 1
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
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
        pool.shutdown(wait=True, cancel_futures=True)
