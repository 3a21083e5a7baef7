"""``nnseg overlay IMAGES LABELS -o OUT``: one PNG per case with each label's outline on the image."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run_overlay"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``overlay`` subcommand."""
    parser = subparsers.add_parser(
        "overlay",
        help="draw label or prediction outlines on the image, one PNG per case",
        description=(
            "For every label map <case><ending> in LABELS, draw the outline of each label in its own colour on "
            "the image IMAGES/<case>_<XXXX><ending> (the slice with the most foreground, CT windowed for soft "
            "tissue, other modalities between the 0.5 and 99.5 percentiles) and write OUT/<case>.png. IMAGES and "
            "LABELS may be raw dataset folders (imagesTr/labelsTr); LABELS may be a prediction or a run's "
            "validation folder. With --reference, prediction and reference are drawn side by side."
        ),
    )
    parser.add_argument("images", type=Path, metavar="IMAGES", help="folder of images, or a raw dataset folder")
    parser.add_argument("labels", type=Path, metavar="LABELS_OR_PREDICTIONS", help="folder of label maps")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="folder for the PNG files")
    parser.add_argument("--reference", type=Path, default=None, metavar="REF",
                        help="folder of reference label maps drawn beside LABELS")  # fmt: skip
    parser.add_argument("--slice", type=int, default=None, metavar="K",
                        help="slice along the first array axis (default: the one with the most foreground)")  # fmt: skip
    parser.add_argument("--channel", type=int, default=0, metavar="C", help="image channel to show (default 0)")
    parser.add_argument("-d", "--dataset-json", type=Path, default=None, metavar="JSON",
                        help="dataset.json for label names and the CT window (default: found next to IMAGES/LABELS)")  # fmt: skip
    parser.set_defaults(handler=run_overlay)


def run_overlay(args: argparse.Namespace) -> int:
    """Write the pictures; return the exit code."""
    from nnseg.dataset import DatasetSpec
    from nnseg.presentation import write_overlays

    spec = DatasetSpec.load(args.dataset_json) if args.dataset_json is not None else None
    written = write_overlays(
        args.images, args.labels, args.output, reference=args.reference, spec=spec, channel=args.channel,
        slice_index=args.slice,
    )  # fmt: skip
    print(f"wrote {len(written)} overlay picture(s) to {args.output}")
    return 0
