"""Two trainers on two datasets in two threads of one process give the same weights as each run alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from training_data_helpers import make_plan, make_spec, threshold_case, write_store

from nnseg.errors import ConfigError
from nnseg.training._callbacks import MetricsLog
from nnseg.training._config import TrainerConfig
from nnseg.training._run_folder import resolve_device
from nnseg.training._split import Split
from nnseg.training._trainer import Trainer


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Intra-op threads are process-wide in torch; fix them so float reductions are the same in every run."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _dataset(root: Path, seed: int, shapes: list[tuple[int, int, int]], batch_size: int) -> dict[str, Any]:
    plan, spec = make_plan(batch_size=batch_size), make_spec()
    cases = {f"c{seed}_{i}": threshold_case(shape, seed=seed * 10 + i) for i, shape in enumerate(shapes)}
    store = write_store(root, plan, spec, cases)
    ids = sorted(cases)
    config = TrainerConfig(iterations_per_epoch=2, num_epochs=2, val_iterations_per_epoch=1, num_loader_workers=0,
                           seed=seed, final_validation=False)  # fmt: skip
    return {"plan": plan, "spec": spec, "store": store, "split": Split(tuple(ids[:-1]), tuple(ids[-1:]), 0),
            "config": config}  # fmt: skip


def _fit(d: dict[str, Any], run_dir: Path) -> dict[str, torch.Tensor]:
    trainer = Trainer(d["plan"], d["store"], d["split"], spec=d["spec"], config=d["config"], callbacks=[MetricsLog()])
    path = trainer.fit(run_dir)
    return torch.load(path, weights_only=True)["network_weights"]


def test_two_trainers_in_two_threads_do_not_interfere(tmp_path: Path, one_thread: None) -> None:
    a = _dataset(tmp_path / "a", 1, [(20, 24, 28), (24, 20, 22), (18, 26, 20)], batch_size=2)
    b = _dataset(tmp_path / "b", 2, [(17, 30, 30), (20, 20, 20), (22, 22, 18), (19, 21, 23)], batch_size=3)
    rng_before, dtype_before = torch.get_rng_state(), torch.get_default_dtype()
    cudnn_before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    alone = {"a": _fit(a, tmp_path / "alone_a"), "b": _fit(b, tmp_path / "alone_b")}
    together: dict[str, dict[str, torch.Tensor]] = {}
    errors: list[BaseException] = []

    def run(name: str, d: dict[str, Any]) -> None:
        try:
            together[name] = _fit(d, tmp_path / f"together_{name}")
        except BaseException as err:  # surfaced in the main thread below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n, d)) for n, d in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    for name in ("a", "b"):
        for key, tensor in alone[name].items():
            assert torch.equal(together[name][key], tensor), (name, key)
    assert not torch.equal(alone["a"]["decoder.seg_layers.0.weight"], alone["b"]["decoder.seg_layers.0.weight"])
    # no process-global state changed behind the caller's back
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.get_default_dtype() == dtype_before
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == cudnn_before
    assert torch.get_num_threads() == 1


def test_device_is_an_argument_and_unknown_cuda_indices_are_refused() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count >= 2:
        assert resolve_device("cuda:1") == torch.device("cuda", 1)
    else:
        with pytest.raises(ConfigError, match=r"device 'cuda:1': this machine has"):
            resolve_device("cuda:1")
