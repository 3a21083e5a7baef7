"""The raw dataset layer: ``DatasetSpec`` (dataset.json), ``Case`` and ``RawDataset``."""

from nnseg.dataset._spec import DatasetSpec, LabelValue

__all__ = ["DatasetSpec", "LabelValue"]
