"""DDP: the batch split and oversampling per rank, and a 2-process gloo run on CPU ending with equal weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def _nnunet_rank_oversampling(batch: int, world: int, p: float) -> list[float]:
    """nnU-Net's rule, written out independently: a per-sample pattern over the global batch, sliced per rank."""
    sizes = [batch // world + (1 if r < batch % world else 0) for r in range(world)]
    forced = [i >= round(batch * (1 - p)) for i in range(batch)]
    shares = []
    for r, size in enumerate(sizes):
        lo = sum(sizes[:r])
        hi = lo + size
        if hi / batch < 1 - p:
            shares.append(0.0)
        elif lo / batch > 1 - p:
            shares.append(1.0)
        else:
            shares.append(sum(forced[lo:hi]) / size)
    return shares


@pytest.mark.parametrize("p", [0.0, 0.2, 0.33, 0.5, 0.66, 1.0])
def test_oversampling_per_rank_is_nnunets_rule_at_every_batch_size(p: float) -> None:
    for batch in range(1, 13):
        for world in range(1, min(batch, 4) + 1):
            expected = [p] if world == 1 else _nnunet_rank_oversampling(batch, world, p)
            assert rank_oversampling(batch, world, p) == expected, (batch, world)


def test_oversampling_per_rank_examples() -> None:
    assert rank_oversampling(2, 1, 0.33) == [0.33]
    assert rank_oversampling(2, 2, 0.33) == [0.0, 1.0]  # round(2 * 0.67) = 1: sample 1 alone is forced
    assert rank_oversampling(5, 2, 0.33) == [0.0, 1.0]  # round(5 * 0.67) = 3: samples 3, 4 forced, rank 1's two
    assert rank_oversampling(6, 3, 0.33) == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(("batch", "world"), [(5, 2), (7, 3), (12, 4), (3, 2)])
def test_each_rank_sampler_forces_exactly_its_samples_of_the_global_pattern(batch: int, world: int) -> None:
    from nnseg.training._sampling import PatchSampler

    forced: list[bool] = []
    for size, share in zip(rank_batch_sizes(batch, world), rank_oversampling(batch, world, 0.33), strict=True):
        sampler = PatchSampler((8, 8), batch_size=size, oversample_foreground_percent=share)
        forced += sampler.forced_foreground(np.random.default_rng(0))
    assert forced == [i >= round(batch * (1 - 0.33)) for i in range(batch)]


def test_trainer_loaders_use_the_rank_share(tmp_path: Path) -> None:
    from nnseg.preprocessing import PreprocessedStore
    from nnseg.training._config import TrainerConfig
    from nnseg.training._split import Split
    from nnseg.training._trainer import Trainer

    plan = make_plan(batch_size=5)
    write_store(tmp_path, plan, make_spec(), {f"case_{i}": threshold_case(s, seed=i) for i, s in enumerate(SHAPES)})
    trainer = Trainer(plan, PreprocessedStore(tmp_path), Split(("case_0", "case_1"), ("case_2",), 0), spec=make_spec(),
                      config=TrainerConfig(probabilistic_oversampling=True), callbacks=[])  # fmt: skip
    for rank, (size, share) in enumerate(zip(rank_batch_sizes(5, 3), rank_oversampling(5, 3, 0.33), strict=True)):
        trainer.distributed = DistributedContext(rank, 3)
        for loader in (trainer.build_train_loader(), trainer.build_val_loader()):
            assert loader is not None
            sampler = loader.sampler
            assert (sampler.batch_size, sampler.oversample_foreground_percent) == (size, share)
            assert sampler.probabilistic_oversampling


def test_batchnorm_becomes_syncbatchnorm_under_ddp_on_accelerators() -> None:
    def bn_net() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.InstanceNorm2d(2))

    converted = DistributedContext(0, 2).sync_batchnorm(bn_net(), torch.device("cuda"))
    assert isinstance(converted[1], torch.nn.SyncBatchNorm)
    assert isinstance(converted[2], torch.nn.InstanceNorm2d)  # instance norm has nothing to synchronise
    single = bn_net()
    assert DistributedContext().sync_batchnorm(single, torch.device("cuda")) is single
    cpu = bn_net()
    assert DistributedContext(0, 2).sync_batchnorm(cpu, torch.device("cpu")) is cpu  # torch's SyncBatchNorm: GPU only


def _validation_batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(rank)
    logits = torch.randn(2, 3, 6, 6, generator=generator)
    target = torch.randint(0, 3, (2, 1, 6, 6), generator=generator)
    return logits, target


def _pseudo_dice_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    from nnseg.training._pseudo_dice import ConfusionCounts, confusion_counts

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        counts = ConfusionCounts()
        counts.add(*confusion_counts(*_validation_batch(rank), regions=False, ignore_label=None))
        loss, summed = DistributedContext.current().sum_validation([float(rank + 1)], counts)
        Path(out_dir, f"dice{rank}.json").write_text(json.dumps({"loss": loss, "dice": summed.dice_per_class()}))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_pseudo_dice_equals_the_one_process_dice(tmp_path: Path) -> None:
    from nnseg.training._pseudo_dice import ConfusionCounts, confusion_counts

    mp.start_processes(_pseudo_dice_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")  # fmt: skip
    one_process = ConfusionCounts()
    for rank in range(2):
        one_process.add(*confusion_counts(*_validation_batch(rank), regions=False, ignore_label=None))
    for rank in range(2):
        result = json.loads((tmp_path / f"dice{rank}.json").read_text())
        assert result["dice"] == pytest.approx(one_process.dice_per_class())
        assert result["loss"] == pytest.approx(1.5)


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
