"""Public helpers for tests, demos and benchmarks.

:func:`make_synthetic_dataset` writes a small, deterministic nnU-Net raw dataset (CT-like or MR-like,
3D or 2D, one or more channels) that exercises what planning and preprocessing react to: anisotropic
spacing, varying shapes, crop-to-nonzero, a small structure. :func:`make_synthetic_case` returns one such
case as arrays, without touching the disk. :func:`make_plans_json` returns a small nnU-Net plans dict
(one configuration, a PlainConvUNet) for code that needs plans without running the planner.
"""

from nnseg.testing._plans import make_plans_json
from nnseg.testing._synthetic import make_synthetic_dataset
from nnseg.testing._synthetic_case import make_synthetic_case

__all__ = ["make_plans_json", "make_synthetic_case", "make_synthetic_dataset"]
