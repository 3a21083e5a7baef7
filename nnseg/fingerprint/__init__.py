"""Dataset fingerprint: the statistics nnU-Net's planner is driven by, and how to compute them.

Example:
    >>> from nnseg.dataset import RawDataset
    >>> from nnseg.fingerprint import extract_fingerprint
    >>> ds = RawDataset.from_folder("raw/Dataset001_Liver")
    >>> fp = extract_fingerprint(ds, num_workers=8, cache_dir="work/fingerprint_cache")
    >>> fp.save("work/fingerprint.json")
"""

from nnseg.fingerprint._cache import FingerprintCacheStatus
from nnseg.fingerprint._extract import (
    DEFAULT_SEED,
    default_num_samples,
    extract_fingerprint,
    fingerprint_cache_status,
    fingerprint_case,
)
from nnseg.fingerprint._fingerprint import CaseFingerprint, Fingerprint, IntensityStats

__all__ = [
    "DEFAULT_SEED",
    "CaseFingerprint",
    "Fingerprint",
    "FingerprintCacheStatus",
    "IntensityStats",
    "default_num_samples",
    "extract_fingerprint",
    "fingerprint_cache_status",
    "fingerprint_case",
]
