"""Planner parity with nnunetv2 2.8.1: the same plans from the same fingerprint, default planner and ResEnc M/L/XL.

nnU-Net's planners run as a black box on hand-written ``dataset_fingerprint.json`` / ``dataset.json`` files
(no images: ``dataset.json`` lists its files under ``"dataset"`` and names the reader, so nothing is read).
nnU-Net builds a network for every memory estimate; to keep this file fast the estimate runs with torch's
default device set to ``meta`` (no weights are allocated or initialised; the estimate only reads the module
structure, which :func:`test_meta_device_estimate_equals_cpu_estimate` checks) and is memoised across runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnseg.dataset import DatasetSpec
from nnseg.fingerprint import Fingerprint
from nnseg.planning import Planner, Plans, ResEncLPlanner, ResEncMPlanner, ResEncXLPlanner

pytestmark = [
    pytest.mark.parity,
    pytest.mark.filterwarnings("ignore:WARNING. You are running nnUNetPlanner:UserWarning"),
]

TARGETS_GB = (8, 12, 24, 40, 80)
PRESET_TARGETS_GB = {"resenc_m": (8, 24), "resenc_xl": (40, 12, 80)}
"""ResEnc M and XL at their own target and at targets that scale their budget down and up."""
RUNS = [(planner, gb) for planner in ("default", "resenc_l") for gb in TARGETS_GB] + [
    (planner, gb) for planner, targets in PRESET_TARGETS_GB.items() for gb in targets
]
STATS = {"mean": 100.5, "median": 98.0, "std": 40.25, "min": -200.0, "max": 400.0, "percentile_99_5": 300.0,
         "percentile_00_5": -50.0}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """A synthetic dataset description: per-case spacings and shapes are drawn around the given values."""

    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    num_cases: int
    channels: tuple[str, ...] = ("CT",)
    spacing_jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shape_jitter: tuple[int, int, int] = (0, 0, 0)
    labels: tuple[str, ...] = ("background", "a", "b")
    relative_size: float = 1.0
    reader: str = "SimpleITKIO"

    def fingerprint(self, seed: int) -> dict[str, Any]:
        """Return ``dataset_fingerprint.json`` content."""
        rng = np.random.default_rng(seed)
        spacing = np.asarray(self.spacing) + rng.uniform(-1, 1, (self.num_cases, 3)) * np.asarray(self.spacing_jitter)
        shapes = np.asarray(self.shape) + rng.integers(-1, 2, (self.num_cases, 3)) * rng.integers(
            0, np.asarray(self.shape_jitter) + 1, (self.num_cases, 3)
        )
        return {
            "spacings": [[round(float(v), 4) for v in s] for s in spacing],
            "shapes_after_crop": [[int(v) for v in s] for s in shapes],
            "foreground_intensity_properties_per_channel": {str(i): STATS for i in range(len(self.channels))},
            "median_relative_size_after_cropping": self.relative_size,
        }

    def dataset_json(self) -> dict[str, Any]:
        """Return ``dataset.json`` content whose file list needs no files on disk."""
        ending = ".png" if self.shape[0] == 1 else ".nii.gz"
        files = {
            f"c{i:03d}": {"images": [f"c{i:03d}{ending}"], "label": f"c{i:03d}{ending}"} for i in range(self.num_cases)
        }
        return {
            "channel_names": {str(i): name for i, name in enumerate(self.channels)},
            "labels": {name: i for i, name in enumerate(self.labels)},
            "numTraining": self.num_cases,
            "file_ending": ending,
            "overwrite_image_reader_writer": self.reader,
            "dataset": files,
        }


CASES = {
    # isotropic CT, one channel, no 3d_lowres
    "iso_ct": Case((1.0, 1.0, 1.0), (150, 150, 150), 40, spacing_jitter=(0.05, 0.05, 0.05), shape_jitter=(20, 20, 20)),
    # 3:1 (not anisotropic by nnU-Net's strict ">" rule), two z-score channels, cropping -> use_mask_for_norm
    "aniso3_mr_2ch": Case(
        (3.0, 1.0, 1.0), (50, 230, 230), 25, ("T1", "T2"), (0.0, 0.1, 0.1), (8, 25, 25), relative_size=0.6
    ),  # fmt: skip
    # 5:1 with few slices: target z from the 10th percentile; four channels with four schemes
    "aniso5_4ch": Case(
        (5.0, 1.0, 1.0),
        (24, 200, 200),
        12,
        ("T1", "noNorm", "zscore", "rescale_to_0_1"),
        (1.0, 0.0, 0.0),
        (4, 20, 20),
        relative_size=0.5,
    ),  # fmt: skip
    # coarse last axis: transpose_forward [2, 0, 1]; an ignore label counts as a class
    "transposed": Case(
        (0.7, 0.7, 2.0),
        (300, 300, 80),
        8,
        ("MR",),
        (0.02, 0.02, 0.2),
        (30, 30, 10),
        labels=("background", "a", "ignore"),
        relative_size=0.7,
    ),  # fmt: skip
    # small images, three cases: the 5 % cap and the minimum batch size decide
    "small_few": Case((1.0, 1.0, 1.0), (24, 30, 30), 3, ("MR",), shape_jitter=(4, 6, 6)),
    # medium images, many cases, two channels (CT + z-score)
    "many_cases_2ch": Case((1.5, 1.5, 1.5), (90, 90, 90), 500, ("CT", "PET"), shape_jitter=(10, 10, 10)),
    # large anisotropic CT: 3d_lowres and the cascade are created at small targets
    "large_lowres": Case((2.5, 0.8, 0.8), (120, 420, 420), 60, shape_jitter=(20, 20, 20)),
    # 2-D RGB-like images (three channels rescaled to [0, 1])
    "2d_rgb": Case(
        (999.0, 1.0, 1.0), (1, 500, 500), 30, ("rgb_to_0_1",) * 3, shape_jitter=(0, 80, 80), reader="NaturalImage2DIO"
    ),  # fmt: skip
    # 2-D small grey images, few cases
    "2d_small_few": Case(
        (999.0, 0.5, 0.5), (1, 80, 80), 5, ("MR",), shape_jitter=(0, 16, 16), reader="NaturalImage2DIO"
    ),
}


class NnunetRunner:
    """Runs nnunetv2's planners on the cases above, in a folder tree it owns."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.written: set[str] = set()

    def dataset_name(self, case: str) -> str:
        return f"Dataset{900 + list(CASES).index(case)}_{case}"

    def write(self, case: str) -> None:
        name = self.dataset_name(case)
        if name in self.written:
            return
        for folder in ("raw", "pre"):
            (self.root / folder / name).mkdir(parents=True)
        (self.root / "raw" / name / "dataset.json").write_text(json.dumps(CASES[case].dataset_json()))
        fingerprint = CASES[case].fingerprint(seed=list(CASES).index(case))
        (self.root / "pre" / name / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
        self.written.add(name)

    def plan(self, case: str, planner: str, gpu_gb: float) -> dict[str, Any]:
        from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
        from nnunetv2.experiment_planning.experiment_planners.residual_unets import (
            residual_encoder_unet_planners as resenc,
        )

        self.write(case)
        name = self.dataset_name(case)
        classes = {"default": ExperimentPlanner, "resenc_m": resenc.nnUNetPlannerResEncM,
                   "resenc_l": resenc.nnUNetPlannerResEncL, "resenc_xl": resenc.nnUNetPlannerResEncXL}  # fmt: skip
        instance = classes[planner](name, gpu_memory_target_in_gb=gpu_gb)
        plans_file = self.root / "pre" / name / f"{instance.plans_identifier}.json"
        plans_file.unlink(missing_ok=True)  # nnU-Net keeps configurations of an existing file
        with contextlib.redirect_stdout(io.StringIO()):
            instance.plan_experiment()
        return json.loads(plans_file.read_text())


def _memoised_meta_estimate(original: Callable[..., int]) -> Callable[..., int]:
    import torch

    cache: dict[str, int] = {}

    def estimate(*args: Any, **kwargs: Any) -> int:
        key = json.dumps([args, kwargs], default=str, sort_keys=True)
        if key not in cache:
            with torch.device("meta"):
                cache[key] = int(original(*args, **kwargs))
        return cache[key]

    return estimate


@pytest.fixture(scope="module")
def nnunet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NnunetRunner]:
    """nnunetv2's planners with the environment pointing at a temporary tree."""
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    root = tmp_path_factory.mktemp("nnunet_planner")
    with pytest.MonkeyPatch.context() as mp:
        for var, folder in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "pre"), ("nnUNet_results", "results")):
            mp.setenv(var, str(root / folder))
        mp.setenv("nnUNet_n_proc_DA", "1")  # otherwise every estimate spawns `hostname`
        original = ExperimentPlanner.static_estimate_VRAM_usage
        mp.setattr(ExperimentPlanner, "static_estimate_VRAM_usage", staticmethod(_memoised_meta_estimate(original)))
        yield NnunetRunner(root)


def _nnseg_plans(case: str, planner: str, gpu_gb: float, dataset_name: str) -> Plans:
    fingerprint = Fingerprint.from_json(CASES[case].fingerprint(seed=list(CASES).index(case)))
    spec = DatasetSpec.from_dict(CASES[case].dataset_json())
    factories = {
        "default": Planner,
        "resenc_m": ResEncMPlanner,
        "resenc_l": ResEncLPlanner,
        "resenc_xl": ResEncXLPlanner,
    }
    chosen = factories[planner](gpu_memory_gb=gpu_gb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the presets warn for targets other than their own, as nnU-Net does
        return chosen.plan(fingerprint, spec, dataset_name=dataset_name)


def _without_reports(plans: Plans) -> dict[str, Any]:
    data = plans.to_json()
    data.pop("nnseg_format_version")
    for configuration in data["configurations"].values():
        configuration.pop("nnseg_memory_report", None)
    return data


def _summary(plans: dict[str, Any]) -> dict[str, Any]:
    """The fields the issue names, per configuration (a readable diff when the full comparison fails)."""
    out: dict[str, Any] = {
        "transpose_forward": plans["transpose_forward"],
        "configurations": list(plans["configurations"]),
    }
    for name, cfg in plans["configurations"].items():
        if "architecture" not in cfg:
            out[name] = cfg
            continue
        kwargs = cfg["architecture"]["arch_kwargs"]
        out[name] = {key: cfg[key] for key in ("spacing", "patch_size", "batch_size", "normalization_schemes",
                                               "use_mask_for_norm")}  # fmt: skip
        out[name].update({key: kwargs[key] for key in ("n_stages", "features_per_stage", "kernel_sizes", "strides")})
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("planner", "gpu_gb"), RUNS, ids=[f"{p}-{gb}" for p, gb in RUNS])
@pytest.mark.parametrize("case", list(CASES))
def test_plans_equal_nnunet(nnunet: NnunetRunner, case: str, planner: str, gpu_gb: float) -> None:
    theirs = nnunet.plan(case, planner, gpu_gb)
    ours = _without_reports(_nnseg_plans(case, planner, gpu_gb, nnunet.dataset_name(case)))
    assert _summary(ours) == _summary(theirs)
    assert ours == theirs


def test_cases_cover_what_the_issue_asks_for(nnunet: NnunetRunner) -> None:
    """The fingerprints above really are varied: lowres, transposition, 2-D, channels, anisotropy."""
    plans = {case: _nnseg_plans(case, "default", 8, nnunet.dataset_name(case)) for case in CASES}
    assert [c for c, p in plans.items() if "3d_lowres" in p.configuration_names] == ["large_lowres"]
    assert plans["transposed"].transpose_forward == (2, 0, 1)
    assert {c for c, p in plans.items() if "3d_fullres" not in p.configuration_names} == {"2d_rgb", "2d_small_few"}
    assert {len(CASES[c].channels) for c in CASES} >= {1, 2, 4}
    fullres = plans["aniso5_4ch"]["3d_fullres"].spacing
    assert fullres[0] < float(np.median([s[0] for s in CASES["aniso5_4ch"].fingerprint(2)["spacings"]]))
    assert plans["aniso3_mr_2ch"]["3d_fullres"].use_mask_for_norm == (True, True)
    assert plans["small_few"]["3d_fullres"].batch_size == 2  # the 5 % cap, floored at the minimum


def test_meta_device_estimate_equals_cpu_estimate(nnunet: NnunetRunner) -> None:
    """The speed-up used above does not change nnU-Net's estimate: a network built on the CPU agrees."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    configuration = nnunet.plan("small_few", "resenc_l", 24)["configurations"]["3d_fullres"]
    architecture, patch = configuration["architecture"], configuration["patch_size"]
    names = (architecture["network_class_name"], architecture["arch_kwargs"], architecture["_kw_requires_import"])
    meta = ExperimentPlanner.static_estimate_VRAM_usage(patch, 1, 3, *names)  # the memoised meta wrapper
    network = get_network_from_plans(*names, 1, 3, allow_init=False)
    assert next(network.parameters()).device.type == "cpu"
    assert int(network.compute_conv_feature_map_size(patch)) == meta > 0
