"""TensorBoardLogger: the metrics' scalars and a validation picture, through any writer; clear error without it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from training_data_helpers import make_plan, make_spec, threshold_case, write_store

from nnseg.errors import ConfigError
from nnseg.training._callbacks import MetricsLog
from nnseg.training._config import TrainerConfig
from nnseg.training._split import Split
from nnseg.training._tensorboard import TensorBoardLogger, outline_picture
from nnseg.training._trainer import Trainer

CONFIG = TrainerConfig(iterations_per_epoch=2, num_epochs=2, val_iterations_per_epoch=1, num_loader_workers=0, seed=1,
                       final_validation=False)  # fmt: skip


class RecordingWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.images: list[tuple[str, np.ndarray, int]] = []
        self.flushes = 0

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def add_image(self, tag: str, image: np.ndarray, step: int, dataformats: str = "CHW") -> None:
        assert dataformats == "HWC"
        self.images.append((tag, image, step))

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        raise AssertionError("a writer passed in is the caller's to close")


@pytest.fixture(scope="module")
def trainer_parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    plan, spec = make_plan(), make_spec()
    cases = {f"case_{i}": threshold_case((20, 24, 24), seed=i) for i in range(3)}
    store = write_store(tmp_path_factory.mktemp("store"), plan, spec, cases)
    return {"plan": plan, "spec": spec, "store": store, "split": Split(("case_0", "case_1"), ("case_2",), 0)}


def test_scalars_per_epoch_and_a_picture(trainer_parts: dict[str, Any], tmp_path: Path) -> None:
    writer = RecordingWriter()
    logger = TensorBoardLogger(image_every_epochs=2, writer=writer)
    trainer = Trainer(trainer_parts["plan"], trainer_parts["store"], trainer_parts["split"], spec=trainer_parts["spec"],
                      config=CONFIG, callbacks=[MetricsLog(), logger])  # fmt: skip
    trainer.fit(tmp_path / "run")
    tags = {tag for tag, _, _ in writer.scalars}
    assert {"train_loss", "val_loss", "pseudo_dice", "ema_pseudo_dice", "lr", "seconds_per_step"} <= tags
    assert any(tag.startswith("pseudo_dice/") for tag in tags)
    assert sorted({step for _, _, step in writer.scalars}) == [2, 4]
    ((tag, image, step),) = writer.images
    assert (tag, step) == ("validation", 4)
    assert image.dtype == np.uint8
    assert image.shape[2] == 3
    assert image.shape[1] == 2 * 24  # prediction and reference side by side
    assert trainer.network.training  # the picture leaves the network in training mode


def test_outline_picture_colours_only_the_boundary() -> None:
    labels = np.zeros((9, 9), np.int64)
    labels[2:7, 2:7] = 1
    rgb = outline_picture(np.zeros((9, 9), np.float32), labels, labels)
    red = (rgb[..., 0] == 230) & (rgb[..., 1] == 25)
    assert red[:, :9].sum() == 16  # the 5x5 square's border
    assert not red[4, 4]


def test_bad_option_and_missing_tensorboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="image_every_epochs"):
        TensorBoardLogger(image_every_epochs=-1)
    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed: the missing-package message cannot be shown")
    with pytest.raises(
        ConfigError, match=r"TensorBoardLogger needs the tensorboard package.*pip install 'nnseg\[tensorboard\]'"
    ):
        TensorBoardLogger(tmp_path).on_fit_start(None, tmp_path)  # type: ignore[arg-type]


def test_real_event_files(trainer_parts: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'nnseg[tensorboard]')")
    trainer = Trainer(trainer_parts["plan"], trainer_parts["store"], trainer_parts["split"], spec=trainer_parts["spec"],
                      config=CONFIG, callbacks=[TensorBoardLogger(image_every_epochs=1)])  # fmt: skip
    trainer.fit(tmp_path / "run")
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
