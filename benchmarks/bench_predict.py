"""Benchmark prediction on CPU: nnseg's Predictor against nnU-Net v2's predictor on the same model folder.

A synthetic nnU-Net v2 trained model folder is written (plans.json, dataset.json, fold_0/checkpoint_final.pth
with random He-initialised weights of an nnU-Net-style PlainConvUNet), plus a few synthetic input images.
Each predictor runs in its own process with the same number of torch threads, with and without mirror TTA:

* ``nnseg`` -- ``Predictor.from_nnunet_model_folder(...).predict_folder`` (defaults: float32 accumulation,
  instance norm run as group norm and channels-last layout,
  ``--batch-size`` network inputs (tiles and mirrored copies) per forward pass, preprocessing/export overlapped in threads);
* ``nnseg-fp16`` -- float16 accumulation, one input per forward pass, the network as built (nnU-Net's
  numerics: bit-identical segmentations);
* ``nnunet`` -- ``nnUNetPredictor.predict_from_files_sequential`` (when nnunetv2 is installed).

Reported: seconds per case (prediction only, after the model is loaded), the process's peak RSS, and the
voxel agreement of each nnseg variant with nnU-Net's segmentations.

Usage::

    python benchmarks/bench_predict.py --quick      # small network and images, a few minutes on 2 cores
    python benchmarks/bench_predict.py --threads 4

Prints a table and writes benchmarks/results/predict.json (``--output`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "predict.json"
SIZES = {  # (patch, features per stage, case shape, number of cases)
    "full": ((64, 112, 112), (32, 64, 128, 256, 320), (96, 160, 160), 3),
    "quick": ((32, 64, 64), (16, 32, 64, 128), (48, 80, 80), 2),
}


def _plans(patch: tuple[int, ...], features: tuple[int, ...]) -> dict[str, Any]:
    from nnseg.testing import make_plans_json

    return make_plans_json(
        patch,
        features=features,
        convs_per_stage=2,
        instance_norm=True,
        batch_dice=False,
        median_shape=patch,
        dataset_name="Dataset999_Bench",
    )


def make_inputs(root: Path, size: str) -> tuple[Path, Path]:
    """Write the model folder and the input images; return (model folder, input folder)."""
    import SimpleITK as sitk
    import torch

    from nnseg.network import build_network
    from nnseg.planning import Plans

    patch, features, shape, num_cases = SIZES[size]
    plans = _plans(patch, features)
    dataset = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 1,
               "file_ending": ".nii.gz"}  # fmt: skip
    model = root / "model"
    (model / "fold_0").mkdir(parents=True)
    (model / "plans.json").write_text(json.dumps(plans))
    (model / "dataset.json").write_text(json.dumps(dataset))
    torch.manual_seed(0)
    network = build_network(Plans.from_json(plans)["3d_fullres"].architecture, num_input_channels=1, num_outputs=3,
                            deep_supervision=False)  # fmt: skip
    torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": (0, 1, 2)},
               model / "fold_0" / "checkpoint_final.pth")  # fmt: skip
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(num_cases):
        array = rng.normal(size=shape).astype(np.float32)
        sitk.WriteImage(sitk.GetImageFromArray(array), str(images / f"case_{index:03d}_0000.nii.gz"))
    return model, images


def child(tool: str, model: Path, images: Path, output: Path, tta: bool, threads: int,
          batch_size: int | None) -> dict[str, Any]:  # fmt: skip
    """Run one predictor in this process; return timings and peak RSS."""
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    if tool.startswith("nnseg"):
        from nnseg.inference import InferenceSettings, Predictor

        settings = InferenceSettings(use_mirroring=tta, tile_batch_size=batch_size)
        if tool == "nnseg-fp16":  # nnU-Net's numerics: float16 blending, one input per pass, network as built
            settings = settings.with_nnunet_numerics()
        predictor = Predictor.from_nnunet_model_folder(model, folds=(0,), settings=settings)
        loaded = time.perf_counter()
        predictor.predict_folder(images, output, progress=False)
    else:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=tta,
                                    perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                    allow_tqdm=False)  # fmt: skip
        predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,))
        loaded = time.perf_counter()
        output.mkdir(parents=True, exist_ok=True)
        predictor.predict_from_files_sequential(str(images), str(output), False, True, None)
    done = time.perf_counter()
    cases = len(list(images.glob("*_0000.nii.gz")))
    return {"tool": tool, "tta": tta, "seconds_per_case": (done - loaded) / cases, "load_seconds": loaded - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def _run_child(
    tool: str, model: Path, images: Path, output: Path, tta: bool, args: argparse.Namespace
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        tool,
        "--model",
        str(model),
        "--images",
        str(images),
        "--child-output",
        str(output),
        "--threads",
        str(args.threads),
    ]
    command += ["--tta"] if tta else []
    command += ["--batch-size", str(args.batch_size)] if args.batch_size else []  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "nnUNet_raw": str(output.parent),
           "nnUNet_preprocessed": str(output.parent), "nnUNet_results": str(output.parent)}  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{tool} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _agreement(ours: Path, theirs: Path) -> float:
    import SimpleITK as sitk

    same = total = 0
    for path in sorted(theirs.glob("*.nii.gz")):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(ours / path.name)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        same, total = same + int((a == b).sum()), total + a.size
    return same / total


def main() -> None:
    """Parse arguments, run every predictor, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="nnseg batch size (default: auto)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per tool; the fastest is reported")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", default=None)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--images", type=Path)
    parser.add_argument("--child-output", type=Path)
    parser.add_argument("--tta", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.images, args.child_output, args.tta, args.threads,
                               args.batch_size)))  # fmt: skip
        return
    size = "quick" if args.quick else "full"
    try:
        import nnunetv2  # noqa: F401

        tools = ["nnunet", "nnseg", "nnseg-fp16"]
    except ImportError:
        tools = ["nnseg", "nnseg-fp16"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model, images = make_inputs(Path(tmp), size)
        for tta in (False, True):
            runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
            for repeat in range(args.repeats):  # round robin, so that load changes hit every tool alike
                for tool in tools:
                    runs[tool].append(_run_child(tool, model, images, Path(tmp) / f"{tool}-{tta}-{repeat}", tta, args))
            for tool in tools:
                row = min(runs[tool], key=lambda r: r["seconds_per_case"])
                row["all_seconds_per_case"] = [r["seconds_per_case"] for r in runs[tool]]
                if tool != "nnunet" and "nnunet" in tools:
                    row["agreement_with_nnunet"] = _agreement(
                        Path(tmp) / f"{tool}-{tta}-0", Path(tmp) / f"nnunet-{tta}-0"
                    )
                rows.append(row)
                print(f"{tool:11s} tta={tta!s:5s} {row['seconds_per_case']:7.2f} s/case (best of {args.repeats})  peak RSS "
                      f"{row['peak_rss_mb']:7.0f} MB  agreement {row.get('agreement_with_nnunet', float('nan')):.6f}",
                      flush=True)  # fmt: skip
    patch, features, shape, num_cases = SIZES[size]
    report = {"size": size, "patch": patch, "features": features, "case_shape": shape, "cases": num_cases,
              "threads": args.threads, "batch_size": args.batch_size, "repeats": args.repeats,
              "load_average_at_end": os.getloadavg(), "machine": platform.platform(),
              "cpus": os.cpu_count(), "python": platform.python_version(), "rows": rows}  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
