"""Pieces of hand-written nnU-Net plans shared by the tests (built by :func:`nnseg.testing.make_plans_json`)."""

from nnseg.testing._plans import RESAMPLING

__all__ = ["RESAMPLING"]
