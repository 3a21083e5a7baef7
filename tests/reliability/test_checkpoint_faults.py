"""Checkpoints under faults: a failed write keeps the previous checkpoint and a rerun ends identical to an undisturbed
run; damaged, foreign-version and pickled checkpoints are refused without running anything; resuming from a damaged
``checkpoint_latest.pt`` names the fix; the JSON-ish parts of a checkpoint are fuzzed."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnseg.checkpoint import FORMAT_VERSION, Checkpoint
from nnseg.errors import CheckpointError

TRAINING = Path(__file__).resolve().parents[1] / "training"
ROOT = Path(__file__).resolve().parents[2]
SHAPES = [(20, 24, 28), (24, 20, 22), (18, 26, 20), (17, 30, 30), (20, 20, 20)]

# Trains the tiny plan for 3 epochs of 2 steps; with LIMIT > 0 a file-size limit is set after epoch 1's metrics,
# so that epoch's checkpoint write fails. Prints the error as JSON, exits 1 on an NnsegError (the CLI's code).
SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    sys.path[:0] = [sys.argv[3], str(Path(sys.argv[3]).parent)]
    from training_data_helpers import make_plan, make_spec
    from nnseg.errors import NnsegError
    from nnseg.preprocessing import PreprocessedStore
    from nnseg.training._callbacks import Callback, MetricsLog
    from nnseg.training._config import TrainerConfig
    from nnseg.training._split import Split
    from nnseg.training._trainer import Trainer
    limit = int(sys.argv[4])

    class Limit(Callback):
        def on_epoch_end(self, trainer, metrics):
            if limit and metrics["epoch"] == 1:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    config = TrainerConfig(iterations_per_epoch=2, num_epochs=3, val_iterations_per_epoch=1, num_loader_workers=0,
                           seed=3, final_validation=False)
    split = Split(("case_0", "case_1", "case_2", "case_3"), ("case_4",), 0)
    trainer = Trainer(make_plan(), PreprocessedStore(sys.argv[1]), split, spec=make_spec(), config=config,
                      callbacks=[MetricsLog(), Limit()])
    try:
        trainer.fit(sys.argv[2])
    except NnsegError as err:
        print(json.dumps({"type": type(err).__name__, "errno": getattr(err, "errno", None), "message": str(err)}))
        sys.exit(1)
    print(json.dumps({"type": None}))
""")


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path[:0] = [str(TRAINING)]
    from training_data_helpers import make_plan, make_spec, threshold_case, write_store

    sys.path.remove(str(TRAINING))
    root = tmp_path_factory.mktemp("store")
    write_store(root, make_plan(), make_spec(), {f"case_{i}": threshold_case(s, seed=i) for i, s in enumerate(SHAPES)})
    return root


def _train(store: Path, run_dir: Path, limit: int = 0) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(store), str(run_dir), str(TRAINING), str(limit)],
                          capture_output=True, env=env, timeout=300, check=False)  # fmt: skip
    assert done.stdout, done.stderr.decode()[-3000:]
    return done.returncode, json.loads(done.stdout.decode().strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_checkpoint_write_under_a_file_size_limit_fails_cleanly_and_a_rerun_is_identical(
    store_dir: Path, tmp_path: Path
) -> None:
    code, result = _train(store_dir, tmp_path / "limited", limit=20_000)
    assert code == 1
    assert result["type"] == "WriteError"
    assert result["errno"] == errno.EFBIG
    assert str(result["message"]).startswith(f"cannot write {tmp_path / 'limited'}/checkpoint_")
    assert "this process may write files of at most 20000 bytes (file-size limit, `ulimit -f`)" in result["message"]
    assert "nothing was kept under that name" in result["message"]
    files = sorted(p.name for p in (tmp_path / "limited").iterdir())
    assert [f for f in files if f.startswith(".")] == []  # no temporary file, the lock released
    latest = Checkpoint.load(tmp_path / "limited" / "checkpoint_latest.pt")  # the previous one stays valid
    assert latest.train_state.step == 2
    assert "checkpoint_final.pt" not in files
    assert _train(store_dir, tmp_path / "limited") == (0, {"type": None})  # "space freed": the same command again
    assert _train(store_dir, tmp_path / "straight") == (0, {"type": None})
    a = torch.load(tmp_path / "straight" / "checkpoint_final.pt", weights_only=True)
    b = torch.load(tmp_path / "limited" / "checkpoint_final.pt", weights_only=True)
    assert a["train_state"]["step"] == b["train_state"]["step"] == 6
    for name, tensor in a["network_weights"].items():
        assert torch.equal(tensor, b["network_weights"][name]), name
    assert [(tmp_path / d / "metrics.jsonl").read_text().count("\n") for d in ("straight", "limited")] == [3, 3]


class _RunsCode:
    """A pickled object whose unpickling would create a file: the proof that nothing ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_a_checkpoint_whose_payload_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    path, marker = tmp_path / "evil.pt", tmp_path / "code_ran"
    torch.save({"format_version": FORMAT_VERSION, "network_weights": {}, "train_state": {}, "x": _RunsCode(marker)},
               path)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"evil\.pt holds pickled Python objects .* It is not loaded: loading it "
                                              r"unsafely could run code from the file"):  # fmt: skip
        Checkpoint.load(path)
    assert not marker.exists()


def _stopping_trainer(store: Path, stop_after: int | None, **config: Any) -> Any:
    sys.path[:0] = [str(TRAINING)]
    from training_data_helpers import make_plan, make_spec

    sys.path.remove(str(TRAINING))
    from nnseg.preprocessing import PreprocessedStore
    from nnseg.training._callbacks import Callback
    from nnseg.training._config import TrainerConfig
    from nnseg.training._split import Split
    from nnseg.training._trainer import Trainer

    class StopAfter(Callback):  # a crash in epoch ``stop_after``, before its checkpoint
        def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
            if stop_after is not None and metrics["epoch"] == stop_after:
                raise KeyboardInterrupt

    cfg = TrainerConfig(iterations_per_epoch=1, num_epochs=4, val_iterations_per_epoch=1, num_loader_workers=0,
                        final_validation=False, **config)  # fmt: skip
    split = Split(("case_0", "case_1", "case_2", "case_3"), ("case_4",), 0)
    return Trainer(make_plan(), PreprocessedStore(store), split, spec=make_spec(), config=cfg, callbacks=[StopAfter()])


@pytest.mark.parametrize("keep", [1, 3])
def test_resuming_from_a_damaged_latest_checkpoint_names_the_fix(store_dir: Path, tmp_path: Path, keep: int) -> None:
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _stopping_trainer(store_dir, 2, keep_checkpoints=keep).fit(run)
    latest = run / "checkpoint_latest.pt"
    data = latest.read_bytes()
    latest.unlink()  # a new file: the hard-linked checkpoint_epoch_00002.pt keeps the good bytes
    latest.write_bytes(data[: len(data) // 3])
    if keep == 1:
        fix = rf"No older checkpoint_epoch_\*\.pt exists: delete {latest} to start the run over from step 0\."
    else:
        fix = (r"To resume from the older state checkpoint_epoch_00002\.pt, copy it over checkpoint_latest\.pt "
               rf"\(cp {run}/checkpoint_epoch_00002\.pt {latest}\); to start the run over, delete checkpoint_latest\.pt\.")  # fmt: skip
    with pytest.raises(CheckpointError, match=rf"cannot resume the run in {run}: checkpoint {latest} cannot be read "
                                              rf"\(.*\); it is truncated, corrupted .* {fix}"):  # fmt: skip
        _stopping_trainer(store_dir, None, keep_checkpoints=keep).fit(run)
    assert not (run / ".train.lock").exists()
    if keep == 3:
        (run / "checkpoint_epoch_00002.pt").replace(latest)
        final = _stopping_trainer(store_dir, None, keep_checkpoints=keep).fit(run)
        assert Checkpoint.load(final).train_state.step == 4


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=8)  # fmt: skip
_KEYS = ["format_version", "network_weights", "train_state", "optimizer_state", "scheduler_state",
         "grad_scaler_state", "callback_states", "extra", "world_size", "step", "config"]  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=8), version=st.sampled_from([1, 2, 3, 0, "2"]))
def test_fuzzed_checkpoint_contents_load_or_raise_checkpoint_error(
    tmp_path: Path, content: dict[str, Any], version: Any
) -> None:
    path = tmp_path / "fuzz.pt"
    torch.save({**content, "format_version": version}, path)
    try:
        loaded = Checkpoint.load(path)
    except CheckpointError:
        return
    assert isinstance(loaded, Checkpoint)


@pytest.mark.parametrize("field", ["extra", "config", "loader_state"])
def test_a_layout_1_checkpoint_with_a_malformed_field_is_refused(tmp_path: Path, field: str) -> None:
    path = tmp_path / "old.pt"
    torch.save({"format_version": 1, "network_weights": None, "step": None, field: True}, path)
    with pytest.raises(CheckpointError, match=rf"checkpoint .*old.pt: {field} is a bool, expected a dict\. The file was "
                                              r"not written by this nnseg\."):  # fmt: skip
        Checkpoint.load(path)
