"""Dataset fingerprint: the statistics nnU-Net's planner is driven by."""

from nnseg.fingerprint._fingerprint import Fingerprint, IntensityStats

__all__ = ["Fingerprint", "IntensityStats"]
