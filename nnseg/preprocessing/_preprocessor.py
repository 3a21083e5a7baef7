"""``Preprocessor``: one case from raw arrays (or files) to the network's grid, as nnU-Net v2 does it.

Order of operations (nnU-Net's ``run_case_npy``):

1. cast the image to float32 and **transpose** image and label map with ``plan.transpose_forward`` (the
   spacing is permuted the same way);
2. **crop to the nonzero region** (label voxels outside it become -1; without a label map a 0 / -1 map is
   made, used as the normalisation mask);
3. the **target spacing** is ``plan.spacing`` (2-D configurations keep the original spacing of axis 0) and
   the new shape is :func:`~nnseg.preprocessing._resampling.compute_new_shape`;
4. **normalise** each channel *before* resampling, with the cropped label map as mask;
5. **resample** the image and the label map with the plan's resampling functions;
6. **sample class locations** (only when a label map was given) and cast the label map to int8 (int16 when a
   value exceeds 127).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from nnseg._cropping import crop_to_nonzero
from nnseg.dataset import Case, DatasetSpec
from nnseg.dataset._case import channel_files_fit, read_case_images
from nnseg.errors import DatasetError, NnsegError, PlansError
from nnseg.io import ImageGeometry, read_segmentation
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing._case import CaseProperties, PreprocessedCase
from nnseg.preprocessing._locations import location_classes, sample_class_locations
from nnseg.preprocessing._normalization import Normalizer, build_normalizer
from nnseg.preprocessing._resampling import Resampler, compute_new_shape, resampler_from_plan

__all__ = ["Preprocessor"]

logger = logging.getLogger(__name__)

INT8_MAX = 127
INT16_MAX = 32767


def _signed_labels(seg: np.ndarray, where: str) -> np.ndarray:
    """Return a signed integer copy of a label map (so that -1 can be written into it)."""
    integral = np.issubdtype(seg.dtype, np.integer) or (np.all(np.isfinite(seg)) and np.array_equal(seg, np.round(seg)))
    if not integral:
        raise DatasetError(
            f"{where}: the label map holds non-integer values (dtype {seg.dtype}); expected labels 0, 1, 2, ..."
        )
    high = int(seg.max()) if seg.size else 0
    low = int(seg.min()) if seg.size else 0
    if low < 0:
        raise DatasetError(f"{where}: the label map holds the negative value {low}; labels must be >= 0.")
    if high > INT16_MAX:
        raise DatasetError(
            f"{where}: the label map holds the value {high}; labels above {INT16_MAX} are not supported."
        )
    return seg.astype(np.int16)


class Preprocessor:
    """Preprocess cases for one configuration plan, in memory.

    Args:
        plan: The configuration (spacing, transposition, normalisation, resampling).
        spec: The dataset's channels and labels (which labels / regions get class locations).

    Raises:
        PlansError: If the plan's channels disagree with ``spec`` or name an unknown normalisation or
            resampling function.

    Example:
        >>> pre = Preprocessor(Plans.load("plans.json")["3d_fullres"], dataset.spec)
        >>> case = pre.preprocess_case(dataset["case_000"])
        >>> case.data.shape, case.properties.shape_after_resampling
    """

    def __init__(self, plan: ConfigurationPlan, spec: DatasetSpec) -> None:
        where = f"configuration {plan.name!r} of plans {plan.plans_name!r}"
        num_schemes = len(plan.normalization_schemes)
        if num_schemes != spec.num_channels:
            raise PlansError(
                f"{where}: {num_schemes} normalization_schemes but the dataset has {spec.num_channels} channels "
                f"{list(spec.channel_names)}; the plans were made for another dataset. Re-plan for this dataset."
            )
        if len(plan.transpose_forward) != 3:
            raise PlansError(f"{where}: transpose_forward {list(plan.transpose_forward)} must permute 3 axes.")
        self.plan = plan
        self.spec = spec
        properties = plan.foreground_intensity_properties_per_channel
        self._normalizers: tuple[Normalizer, ...] = tuple(
            build_normalizer(scheme, use_mask_for_norm=use_mask, intensity_properties=properties.get(str(channel)))
            for channel, (scheme, use_mask) in enumerate(zip(plan.normalization_schemes, plan.use_mask_for_norm))
        )
        self._resample_data: Resampler = resampler_from_plan(
            plan.resampling_fn_data, plan.resampling_fn_data_kwargs, where=f"{where}, resampling_fn_data"
        )
        self._resample_seg: Resampler = resampler_from_plan(
            plan.resampling_fn_seg, plan.resampling_fn_seg_kwargs, where=f"{where}, resampling_fn_seg"
        )
        self._location_classes = location_classes(spec)

    @property
    def num_channels(self) -> int:
        """Number of image channels the plan expects."""
        return len(self.plan.normalization_schemes)

    def target_spacing(self, transposed_spacing: Sequence[float]) -> tuple[float, ...]:
        """Return the spacing of the preprocessed grid for a case of ``transposed_spacing``."""
        spacing = tuple(float(s) for s in self.plan.spacing)
        if len(spacing) < len(transposed_spacing):
            return (float(transposed_spacing[0]), *spacing)
        return spacing

    def _check_inputs(
        self, images: np.ndarray, spacing: Sequence[float], seg: np.ndarray | None, where: str
    ) -> np.ndarray | None:
        if images.ndim != 4:
            raise DatasetError(f"{where}: images must be (c, z, y, x) (2-D as (c, 1, y, x)); got shape {images.shape}.")
        if images.shape[0] != self.num_channels:
            raise DatasetError(
                f"{where}: got {images.shape[0]} image channel(s) but the plan expects {self.num_channels} "
                f"({list(self.spec.channel_names)}); give one image per channel, in dataset.json order."
            )
        if len(spacing) != 3 or any(not float(s) > 0 for s in spacing):
            raise DatasetError(
                f"{where}: spacing must be 3 positive numbers in array order (z, y, x); got {list(spacing)}."
            )
        if seg is None:
            return None
        seg = np.asarray(seg)
        if seg.ndim == 3:
            seg = seg[None]
        if seg.shape != (1, *images.shape[1:]):
            raise DatasetError(
                f"{where}: label map shape {seg.shape} does not match the image shape {images.shape}; expected "
                f"{(1, *images.shape[1:])}. Image and label files of a case must have the same size."
            )
        return _signed_labels(seg, where)

    def _normalize(self, data: np.ndarray, seg: np.ndarray, where: str) -> np.ndarray:
        for channel, normalizer in enumerate(self._normalizers):
            try:
                data[channel] = normalizer(data[channel], seg[0])
            except NnsegError as err:
                raise type(err)(f"{where}, channel {channel}: {err}") from err
        return data

    def preprocess(
        self,
        images: np.ndarray,
        spacing: Sequence[float],
        *,
        seg: np.ndarray | None = None,
        geometry: ImageGeometry | None = None,
        case_id: str = "",
    ) -> PreprocessedCase:
        """Preprocess one case given as arrays.

        Args:
            images: ``(c, z, y, x)`` image, one channel per ``dataset.json`` channel (2-D as ``(c, 1, y, x)``).
            spacing: Spacing in array order (untransposed), e.g. ``ImageGeometry.spacing``.
            seg: Label map ``(1, z, y, x)`` (or ``(z, y, x)``), or None (test case).
            geometry: Geometry of the source files, stored in the properties for writing predictions back.
            case_id: Case id, used in the result and in error messages.

        Returns:
            The :class:`PreprocessedCase`; its ``seg`` and ``class_locations`` are None without ``seg``.

        Raises:
            DatasetError: If the arrays have the wrong shape or channel count, or the labels are invalid.
        """
        where = f"case {case_id!r}" if case_id else "preprocess"
        images = np.asarray(images)
        labels = self._check_inputs(images, spacing, seg, where)
        axes = (0, *(axis + 1 for axis in self.plan.transpose_forward))
        data = images.astype(np.float32).transpose(axes)
        labels = None if labels is None else labels.transpose(axes)
        spacing_t = tuple(float(spacing[axis]) for axis in self.plan.transpose_forward)
        shape_before = tuple(data.shape[1:])
        data, mask_seg, bbox = crop_to_nonzero(data, labels)
        target = self.target_spacing(spacing_t)
        new_shape = compute_new_shape(data.shape[1:], spacing_t, target)
        properties = CaseProperties(
            spacing=tuple(float(s) for s in spacing), transpose_forward=self.plan.transpose_forward,
            shape_before_cropping=shape_before, bbox_used_for_cropping=bbox,
            shape_after_cropping_and_before_resampling=data.shape[1:], shape_after_resampling=new_shape,
            target_spacing=target, geometry=geometry,
        )  # fmt: skip
        data = self._normalize(data, mask_seg, where)
        data = np.ascontiguousarray(self._resample_data(data, new_shape, spacing_t, target), dtype=np.float32)
        logger.debug("preprocessed %s: %s -> %s", where, shape_before, new_shape)
        if labels is None:
            return PreprocessedCase(case_id, data, None, properties, None)
        out_seg = self._resample_seg(mask_seg, new_shape, spacing_t, target)
        locations = sample_class_locations(out_seg, self._location_classes)
        dtype = np.int16 if out_seg.size and int(out_seg.max()) > INT8_MAX else np.int8
        return PreprocessedCase(case_id, data, np.ascontiguousarray(out_seg, dtype=dtype), properties, locations)

    def preprocess_case(self, case: Case) -> PreprocessedCase:
        """Read a case's files (and label map, if it has one) and preprocess them.

        Raises:
            DatasetError: If the case has the wrong number of channel files or its arrays do not fit.
            ImageIOError: If a file cannot be read.
        """
        if not channel_files_fit(case, self.num_channels):  # one colour file may hold every channel
            raise DatasetError(
                f"case {case.case_id!r}: {case.num_channels} image file(s) but the plan expects {self.num_channels} "
                f"channel(s) {list(self.spec.channel_names)}; expected files <case>_0000 ... "
                f"<case>_{self.num_channels - 1:04d}."
            )
        images, geometry = read_case_images(case, self.spec.channel_names)  # counts a colour file's channels
        seg = None if case.label_path is None else read_segmentation(case.label_path)[0]
        return self.preprocess(images, geometry.spacing, seg=seg, geometry=geometry, case_id=case.case_id)
