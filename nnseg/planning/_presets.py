"""nnU-Net v2's residual-encoder planners (ResEnc M / L / XL) as :class:`Planner` presets.

Each preset is the default planner with other field values: a ``ResidualEncoderUNet`` with
``(1, 3, 4, 6, 6, 6, ...)`` basic blocks per encoder stage and one conv per decoder stage, its own budget,
no 5 % dataset cap (``max_dataset_covered=1``), the "reference batch fits" shrink rule, and the default
plans' data identifiers for ``2d`` and ``3d_fullres`` (so both plans share preprocessed data). A
``gpu_memory_gb`` other than the preset's scales its budget linearly and warns when planning, as nnU-Net does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nnseg.planning._planner import RESIDUAL_ENCODER_UNET, Planner

__all__ = ["ResEncLPlanner", "ResEncMPlanner", "ResEncXLPlanner"]

_RESENC_COMMON: dict[str, Any] = {
    "network_class": RESIDUAL_ENCODER_UNET,
    "encoder_per_stage": (1, 3, 4, 6),
    "decoder_convs_per_stage": (1,),
    "shrink_condition": "reference_batch",
    "max_dataset_covered": 1.0,
    "data_identifier_base": "nnUNetPlans",
}


def _preset(gpu_gb: float, ref_3d: float, ref_2d: float, size: str, overrides: dict[str, Any]) -> Planner:
    values: dict[str, Any] = {
        **_RESENC_COMMON,
        "gpu_memory_gb": gpu_gb,
        "standard_gpu_memory_gb": gpu_gb,
        "reference_gb": gpu_gb,
        "reference_value_3d": ref_3d,
        "reference_value_2d": ref_2d,
        "plans_name": f"nnUNetResEncUNet{size}Plans",
        "planner_name": f"nnUNetPlannerResEnc{size}",
    }
    return dataclasses.replace(Planner(), **{**values, **overrides})


def ResEncMPlanner(**overrides: Any) -> Planner:  # noqa: N802 - named like the class it stands for
    """Return nnU-Net's ``nnUNetPlannerResEncM`` (8 GB; references 680e6 in 3-D and 135e6 in 2-D).

    Args:
        **overrides: Any :class:`Planner` field, e.g. ``gpu_memory_gb=12``.
    """
    return _preset(8, 680e6, 135e6, "M", overrides)


def ResEncLPlanner(**overrides: Any) -> Planner:  # noqa: N802
    """Return nnU-Net's ``nnUNetPlannerResEncL`` (24 GB; references 2.1e9 in 3-D and 380e6 in 2-D).

    Args:
        **overrides: Any :class:`Planner` field, e.g. ``gpu_memory_gb=40``.
    """
    return _preset(24, 2.1e9, 380e6, "L", overrides)


def ResEncXLPlanner(**overrides: Any) -> Planner:  # noqa: N802
    """Return nnU-Net's ``nnUNetPlannerResEncXL`` (40 GB; references 3.6e9 in 3-D and 560e6 in 2-D).

    Args:
        **overrides: Any :class:`Planner` field, e.g. ``gpu_memory_gb=80``.
    """
    return _preset(40, 3.6e9, 560e6, "XL", overrides)
