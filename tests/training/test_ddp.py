"""DDP: the batch split and oversampling per rank, and a 2-process gloo run on CPU ending with equal weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from training_data_helpers import make_plan, make_spec, threshold_case, write_store

from nnseg.errors import ConfigError
from nnseg.training._ddp import DistributedContext, rank_batch_sizes, rank_oversampling

SHAPES = [(20, 24, 28), (24, 20, 22), (18, 26, 20), (17, 30, 30), (20, 20, 20)]


def test_batch_split_as_nnunet() -> None:
    assert rank_batch_sizes(5, 2) == [3, 2]
    assert rank_batch_sizes(2, 1) == [2]
    assert rank_batch_sizes(7, 3) == [3, 2, 2]
    with pytest.raises(ConfigError, match="batch size 2 cannot be split over 3 processes"):
        rank_batch_sizes(2, 3)


def test_oversampling_per_rank_reproduces_the_global_pattern() -> None:
    assert rank_oversampling(2, 1, 0.33) == [0.33]
    assert rank_oversampling(2, 2, 0.33) == pytest.approx([0.0, 0.66])
    assert rank_oversampling(4, 2, 0.2) == [0.0, pytest.approx(0.4)]
    assert rank_oversampling(6, 3, 0.33)[2] == pytest.approx(0.99)  # 0.01 of its slice lies before the boundary
    shares = rank_oversampling(5, 2, 0.33)  # ranks hold samples 0-2 and 3-4; forced: the last 1.65 samples
    assert shares[0] == 0.0
    assert shares[1] == pytest.approx(1.65 / 2)
    assert sum(s * n for s, n in zip(rank_oversampling(12, 4, 0.5), rank_batch_sizes(12, 4))) == pytest.approx(6)


def test_single_process_context() -> None:
    ctx = DistributedContext.current()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.seed(3)) == (0, 1, True, 3)
    assert ctx.sum([1.0, 2.0]) == [1.0, 2.0]
    with pytest.raises(ConfigError, match="rank 2 is outside 0..1"):
        DistributedContext(2, 2)


def _worker(rank: int, world: int, init_file: str, store_dir: str, run_dir: str, out_dir: str) -> None:
    """One rank: join the gloo group, train, save this rank's final weights for the test to compare."""
    from nnseg.preprocessing import PreprocessedStore
    from nnseg.training._callbacks import MetricsLog
    from nnseg.training._config import TrainerConfig
    from nnseg.training._split import Split
    from nnseg.training._trainer import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        config = TrainerConfig(iterations_per_epoch=2, num_epochs=2, val_iterations_per_epoch=1, num_loader_workers=0,
                               seed=7)  # fmt: skip
        split = Split(("case_0", "case_1", "case_2", "case_3"), ("case_4",), 0)
        trainer = Trainer(make_plan(batch_size=3), PreprocessedStore(store_dir), split, spec=make_spec(), config=config,
                          callbacks=[MetricsLog()])  # fmt: skip
        trainer.fit(run_dir)
        sizes = [int(b.data.shape[0]) for b in [trainer.train_loader.batch(0)]]
        torch.save({"weights": trainer.network.state_dict(), "batch": sizes, "summary_mean": trainer.validation_summary
                    .get("mean_dice")}, Path(out_dir) / f"rank{rank}.pt")  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_end_with_identical_weights(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    write_store(store_dir, make_plan(batch_size=3), make_spec(),
                {f"case_{i}": threshold_case(s, seed=i) for i, s in enumerate(SHAPES)})  # fmt: skip
    args = (2, str(tmp_path / "init"), str(store_dir), str(tmp_path / "run"), str(tmp_path))
    mp.start_processes(_worker, args=args, nprocs=2, join=True, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["batch"] == [2]
    assert ranks[1]["batch"] == [1]
    for name, tensor in ranks[0]["weights"].items():
        assert torch.equal(tensor, ranks[1]["weights"][name]), name
    saved = torch.load(tmp_path / "run" / "checkpoint_final.pt", weights_only=True)
    assert saved["world_size"] == 2  # a resume with another number of processes warns that it is not bitwise exact
    final = saved["network_weights"]
    assert not any(k.startswith("module.") for k in final)
    for name, tensor in final.items():
        assert torch.equal(tensor, ranks[1]["weights"][name]), name
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2  # rank 0 alone writes
    summary = json.loads((tmp_path / "run" / "validation" / "summary_preprocessed.json").read_text())
    assert list(summary["per_case"]) == ["case_4"]
