"""``nnseg synth OUT_DIR``: write a synthetic nnU-Net raw dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "run_synth"]

# command-line option -> keyword of make_synthetic_dataset; options left out keep the library default
_KEYWORDS = {
    "num_cases": "num_cases",
    "num_test_cases": "num_test_cases",
    "shape": "shape",
    "spacing": "spacing",
    "modality": "modality",
    "num_channels": "num_channels",
    "num_classes": "num_classes",
    "seed": "seed",
    "name": "dataset_name",
    "file_ending": "file_ending",
    "spacing_jitter": "spacing_jitter",
    "lesion_scale": "lesion_scale",
    "rgb": "rgb",
}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``synth`` subcommand."""
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic dataset in the nnU-Net raw layout",
        description="Write a small deterministic synthetic dataset (CT-like or MR-like) to OUT_DIR/NAME.",
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="parent folder of the dataset folder")
    parser.add_argument("--num-cases", type=int, help="training cases (default 8)")
    parser.add_argument("--num-test-cases", type=int, help="held-out cases in imagesTs/labelsTs (default 0)")
    parser.add_argument("--shape", type=int, nargs="+", metavar="N", help="typical shape Z Y X (default 32 48 48)")
    parser.add_argument("--spacing", type=float, nargs="+", metavar="MM", help="spacing Z Y X in mm (default 1 1 1)")
    parser.add_argument("--modality", choices=("ct", "mr"), help="intensity model (default ct)")
    parser.add_argument("--num-channels", type=int, help="image channels (default 1)")
    parser.add_argument("--num-classes", type=int, help="labels including background, 2..10 (default 3)")
    parser.add_argument("--seed", type=int, help="seed; the same seed gives the same files (default 0)")
    parser.add_argument("--two-d", action="store_true", help="write 2D cases (the last two entries of shape/spacing)")
    parser.add_argument("--name", help="dataset folder name (default Dataset001_Synthetic)")
    parser.add_argument(
        "--file-ending", help="image file ending: .nii.gz (default), .nii, .nrrd, .mha, or .png with --two-d"
    )
    parser.add_argument("--spacing-jitter", type=float, help="relative per-case spacing variation (default 0)")
    parser.add_argument("--lesion-scale", type=float, help="factor on the lesion's size, 0.5..2.5 (default 1)")
    parser.add_argument(
        "--rgb",
        action="store_true",
        default=None,
        help="with --two-d --file-ending .png: one RGB file per case (channels R, G, B)",
    )
    parser.add_argument("--large", action="store_true",
                        help="3D cases of about 256^3 voxels, large enough that `nnseg plan` keeps 3d_lowres and the "
                             "cascade (not with --shape or --two-d)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace the image files of an existing dataset")
    parser.set_defaults(handler=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    """Write the dataset, say where it is, and return the exit code."""
    from nnseg.testing import make_synthetic_dataset

    kwargs: dict[str, Any] = {kw: getattr(args, opt) for opt, kw in _KEYWORDS.items() if getattr(args, opt) is not None}
    folder = make_synthetic_dataset(args.out_dir, two_d=args.two_d, overwrite=args.overwrite, large=args.large,
                                    **kwargs)  # fmt: skip
    print(f"wrote a synthetic dataset to {folder}")
    return 0
