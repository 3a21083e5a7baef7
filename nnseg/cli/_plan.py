"""``nnseg plan WORK``: plan the dataset of a work folder and measure each configuration's training memory.

Reads ``WORK/fingerprint.json`` and ``WORK/dataset.json`` (written by ``nnseg fingerprint RAW -o WORK``), runs
the chosen planner, measures one training step of every configuration (on the ``meta`` device unless told
otherwise), writes ``WORK/plans/<plans_name>.json`` atomically and prints one row per configuration, plus a
WARNING line for every configuration whose measured memory exceeds the GPU memory target.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnseg._checks import parse_number
from nnseg.errors import DatasetError, FingerprintError

if TYPE_CHECKING:
    from nnseg.planning import Plans

__all__ = ["PLANNERS", "format_plan_table", "memory_warnings", "register", "run_plan"]

# --planner choice -> class name in nnseg.planning
PLANNERS = {
    "default": "Planner",
    "resenc-m": "ResEncMPlanner",
    "resenc-l": "ResEncLPlanner",
    "resenc-xl": "ResEncXLPlanner",
}
GB = 1024**3


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``plan`` subcommand."""
    parser = subparsers.add_parser(
        "plan",
        help="plan the configurations of a work folder and measure their training memory",
        description=(
            "Plan 2d / 3d_fullres / 3d_lowres (+ cascade) from WORK/fingerprint.json and WORK/dataset.json, as "
            "nnU-Net v2 does, measure one training step of each configuration, and write "
            "WORK/plans/<plans_name>.json (nnU-Net's plans.json schema). Run `nnseg fingerprint RAW -o WORK` first."
        ),
    )
    parser.add_argument("work", type=Path, metavar="WORK", help="the work folder written by `nnseg fingerprint`")
    parser.add_argument("--planner", choices=tuple(PLANNERS), default="default",
                        help="nnU-Net's default planner or a residual-encoder preset (default: default)")  # fmt: skip
    parser.add_argument("--gpu-memory-gb", type=float, metavar="X",
                        help="GPU memory target; rescales the planner's budget linearly "
                             "(default: 8 for default and resenc-m, 24 for resenc-l, 40 for resenc-xl)")  # fmt: skip
    parser.add_argument("--name", metavar="PLANS_NAME", help="plans name (default: the planner's, e.g. nnUNetPlans)")
    parser.add_argument("--no-measure", action="store_true", help="skip the memory measurement")
    parser.add_argument("--measure-device", default="meta", metavar="DEVICE",
                        help="where to measure: meta (default; no GPU needed, nothing computed) or cuda:N")  # fmt: skip
    parser.set_defaults(handler=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    """Plan, measure, save, print the table; return the exit code."""
    from nnseg.dataset import DatasetSpec
    from nnseg.fingerprint import Fingerprint
    from nnseg.workspace import Workspace

    workspace = Workspace(args.work)
    if not workspace.fingerprint_path.is_file():
        raise FingerprintError(
            f"{workspace.fingerprint_path} not found; run `nnseg fingerprint RAW_DIR -o {args.work}` first."
        )
    if not workspace.dataset_json_path.is_file():
        raise DatasetError(
            f"{workspace.dataset_json_path} not found; run `nnseg fingerprint RAW_DIR -o {args.work}` first."
        )
    fingerprint = Fingerprint.load(workspace.fingerprint_path)
    spec = DatasetSpec.load(workspace.dataset_json_path)
    # nnU-Net names plans after the raw dataset folder (Dataset001_Liver)
    dataset_name = workspace.raw_dataset_dir().name if workspace.manifest_path.is_file() else None
    plans = _plan_reporting_warnings(_make_planner(args), fingerprint, spec, dataset_name)
    if not args.no_measure:
        from nnseg.planning._memory import attach_memory_reports

        plans = attach_memory_reports(plans, spec, device=args.measure_device)
    path = workspace.plans_path(plans.plans_name)
    _warn_about_dropped_configurations(path, plans)
    plans.save(path)
    print(format_plan_table(plans))
    for line in memory_warnings(plans):
        print(line)
    print(f"wrote {path}")
    return 0


def _plan_reporting_warnings(planner: Any, fingerprint: Any, spec: Any, dataset_name: str | None) -> Plans:
    """Run the planner; print each warning it raises as one ``nnseg plan: warning:`` line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plans: Plans = planner.plan(fingerprint, spec, dataset_name=dataset_name)
    for warning in caught:
        print(f"nnseg plan: warning: {warning.message}", file=sys.stderr)
    return plans


def _warn_about_dropped_configurations(path: Path, plans: Plans) -> None:
    """Say which configurations of an existing plans file the new plans replace without an equivalent."""
    import json

    try:
        old = json.loads(path.read_text())
        old_names = list(old["configurations"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # nothing readable to lose
    dropped = [name for name in old_names if name not in plans.configurations]
    if dropped:
        print(
            f"nnseg plan: warning: {path} is replaced; its configuration(s) {dropped} are not in the new plans and "
            "are dropped (nnU-Net would keep them). Add them again with Plans.with_configurations, or plan under "
            "another --name to keep the old file.",
            file=sys.stderr,
        )


def _make_planner(args: argparse.Namespace) -> Any:
    """The planner the options ask for (``dataclasses.replace`` of the preset with the overrides)."""
    import nnseg.planning

    if args.gpu_memory_gb is not None:
        parse_number("nnseg plan", "--gpu-memory-gb", args.gpu_memory_gb, low=0.0, low_open=True)
    planner = getattr(nnseg.planning, PLANNERS[args.planner])()
    changes: dict[str, Any] = {}
    if args.gpu_memory_gb is not None:
        changes["gpu_memory_gb"] = args.gpu_memory_gb
    if args.name is not None:
        changes["plans_name"] = args.name
    return dataclasses.replace(planner, **changes) if changes else planner


def _count(value: float) -> str:
    """An element count as ``452.8M`` / ``2.10G``."""
    return f"{value / 1e9:.2f}G" if value >= 1e9 else f"{value / 1e6:.1f}M"


def _row(plans: Plans, name: str) -> list[str]:
    plan = plans[name]
    report = plan.memory_report
    patch = "x".join(str(p) for p in plan.patch_size)
    if report is None:
        return [name, patch, str(plan.batch_size), "-", "-", "-", "-"]
    measured = "-" if report.measured_bytes is None else f"{report.measured_bytes / GB:.2f}"
    return [
        name, patch, str(plan.batch_size), _count(report.estimate), _count(report.budget),
        f"{report.gpu_memory_gb:g}", measured,
    ]  # fmt: skip


def format_plan_table(plans: Plans) -> str:
    """Return the table ``nnseg plan`` prints: one row per configuration.

    Columns: configuration, patch, batch, the planner's estimate and budget (feature-map elements per sample,
    nnU-Net's units), the GPU memory target and the measured peak memory of one training step, in GB (GiB).
    """
    header = ["configuration", "patch", "batch", "estimate", "budget", "target (GB)", "measured (GB)"]
    rows = [header] + [_row(plans, name) for name in plans.configuration_names]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(0, f"plans {plans.plans_name!r} for {plans.dataset_name!r} ({plans.experiment_planner_used})")
    lines.append("estimate, budget: the planner's feature-map elements per sample (nnU-Net's units, not bytes).")
    methods = sorted({method for name in plans.configuration_names if (method := _measurement_method(plans, name))})
    for method in methods:
        lines.append(_measurement_footnote(method))
    return "\n".join(lines)


def _measurement_method(plans: Plans, name: str) -> str | None:
    report = plans[name].memory_report
    if report is None or report.measured_bytes is None:
        return None
    return report.measurement_method or "unknown method"


def _measurement_footnote(method: str) -> str:
    """What the measured column counts and leaves out, for one measurement method."""
    from nnseg.planning._memory import CUDA_METHOD

    counted = "weights, SGD momentum, gradients, batch, saved activations, backward buffers"
    if method == CUDA_METHOD:
        return (
            f"measured ({method}): peak allocated during one training step ({counted}, cuDNN workspaces); "
            "excludes allocator caching and the CUDA context (~0.3-0.5 GB)."
        )
    return (
        f"measured ({method}, no GPU used): peak of one training step ({counted}); excludes cuDNN workspaces, "
        "allocator caching and the CUDA context (~0.3-0.5 GB), so expect nvidia-smi to show more."
    )


def memory_warnings(plans: Plans) -> list[str]:
    """Return one WARNING line per configuration whose measured memory exceeds its GPU memory target."""
    lines = []
    for name in plans.configuration_names:
        report = plans[name].memory_report
        if report is None or report.measured_bytes is None:
            continue
        measured_gb = report.measured_bytes / GB
        if measured_gb > report.gpu_memory_gb:
            lines.append(
                f"WARNING: {name} measured {measured_gb:.2f} GB for one training step, more than the "
                f"{report.gpu_memory_gb:g} GB target; training may run out of GPU memory. Plan with a smaller "
                "--gpu-memory-gb or lower its batch_size/patch_size (dataclasses.replace) before training."
            )
    return lines
