"""Dataset fingerprint: the statistics nnU-Net's planner is driven by, and how to compute them.

Example:
    >>> from nnseg.dataset import RawDataset
    >>> from nnseg.fingerprint import extract_fingerprint
    >>> ds = RawDataset.from_folder("raw/Dataset001_Liver")
    >>> fp = extract_fingerprint(ds, num_workers=8, cache_dir="work/fingerprint_cache")
    >>> fp.save("work/fingerprint.json")
"""

from nnseg._deprecation import moved_names
from nnseg.fingerprint._cache import FingerprintCacheStatus
from nnseg.fingerprint._extract import extract_fingerprint, fingerprint_cache_status, fingerprint_case
from nnseg.fingerprint._fingerprint import CaseFingerprint, Fingerprint, IntensityStats

__all__ = [
    "CaseFingerprint",
    "Fingerprint",
    "FingerprintCacheStatus",
    "IntensityStats",
    "extract_fingerprint",
    "fingerprint_cache_status",
    "fingerprint_case",
]

__getattr__ = moved_names(__name__, {
    "DEFAULT_SEED": "nnseg.fingerprint._extract",
    "default_num_samples": "nnseg.fingerprint._extract",
})  # fmt: skip
