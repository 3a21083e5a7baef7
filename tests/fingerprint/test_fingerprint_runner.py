"""The case runner: order-independent results and a clear error when a worker process dies."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import pytest

import nnseg.fingerprint._runner as runner_module
from nnseg.errors import FingerprintError
from nnseg.fingerprint._runner import run_cases


def test_in_process_results_come_with_their_index() -> None:
    results = dict(run_cases(math.sqrt, [4.0, 9.0, 16.0], ["a", "b", "c"], num_workers=1, progress=False))
    assert results == {0: 2.0, 1: 3.0, 2: 4.0}


def test_dead_worker_is_reported_with_the_cases_in_flight() -> None:
    # os._exit kills the worker process without a Python exception, like the out-of-memory killer
    with pytest.raises(FingerprintError, match=r"a fingerprint worker process died \(often the out-of-memory killer\) "
                       r"while computing case\(s\) .*'x'.*rerun with fewer workers \(num_workers=2 now\)"):  # fmt: skip
        list(run_cases(os._exit, [3, 3], ["x", "y"], num_workers=2, progress=False))


def _slow_sqrt_in_caller(tasks: list[float], in_caller: list[int]) -> Callable[[int], float]:
    def local(index: int) -> float:
        in_caller.append(index)
        time.sleep(0.3)  # slow here: the helper (fast, once started) answers while this process works
        return math.sqrt(tasks[index])

    return local


def test_caller_works_as_one_of_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "MIN_HELPER_WORK_S", 0.0)  # tiny tasks: start the helper anyway
    tasks = [float(v * v) for v in range(20)]
    in_caller: list[int] = []
    local = _slow_sqrt_in_caller(tasks, in_caller)
    results = dict(run_cases(math.sqrt, tasks, [str(v) for v in range(20)], num_workers=2, progress=False, local=local))
    assert results == {v: float(v) for v in range(20)}
    assert in_caller[:2] == [19, 18]  # the caller takes cases from the end, the helper from the front
    assert len(in_caller) < 20  # the helper computed some


def test_caller_computes_the_cases_of_a_helper_that_is_still_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "MIN_HELPER_WORK_S", 0.0)
    tasks = [float(v * v) for v in range(3)]
    in_caller: list[int] = []

    def local(index: int) -> float:
        in_caller.append(index)
        return math.sqrt(tasks[index])

    # the helper's function would end its process: its case must be computed here instead of waited for
    start = time.perf_counter()
    results = dict(run_cases(os._exit, tasks, ["a", "b", "c"], num_workers=2, progress=False, local=local))
    assert results == {0: 0.0, 1: 1.0, 2: 2.0}
    assert sorted(in_caller) == [0, 1, 2]
    assert time.perf_counter() - start < 5


def test_no_helper_is_started_for_little_work() -> None:
    in_caller: list[int] = []
    results = dict(run_cases(os._exit, [3, 3, 3], ["x", "y", "z"], num_workers=2, progress=False,
                             local=lambda index: in_caller.append(index) or index))  # fmt: skip
    assert results == {0: 0, 1: 1, 2: 2}
    assert in_caller == [2, 1, 0]


def test_one_worker_with_local_runs_everything_in_the_caller() -> None:
    in_caller: list[int] = []
    results = list(run_cases(os._exit, [3, 3], ["x", "y"], num_workers=1, progress=False,
                             local=lambda index: in_caller.append(index) or index))  # fmt: skip
    assert results == [(0, 0), (1, 1)]
    assert in_caller == [0, 1]
