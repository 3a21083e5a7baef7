"""The raw dataset layer: ``DatasetSpec`` (dataset.json), ``Case``, ``RawDataset`` and its integrity check.

Example:
    >>> from nnseg.dataset import RawDataset, verify_folder
    >>> ds = RawDataset.from_folder("raw/Dataset001_Liver")   # cheap layout checks, no image read
    >>> report = ds.verify(num_workers=4)                      # reads every file
    >>> print(report.format())
    >>> print(verify_folder("raw/Dataset001_Liver").format())   # layout and files, even if the layout is broken
"""

from nnseg._deprecation import moved_names
from nnseg.dataset._case import Case
from nnseg.dataset._problem import Problem
from nnseg.dataset._raw import RawDataset, verify_folder
from nnseg.dataset._spec import DatasetSpec
from nnseg.dataset._verify import VerificationReport

__all__ = ["Case", "DatasetSpec", "Problem", "RawDataset", "VerificationReport", "verify_folder"]

__getattr__ = moved_names(__name__, {"LabelValue": "nnseg.dataset._spec"})
