"""What the planner reads from a dataset and how it writes a configuration in nnU-Net v2's plans schema.

* :func:`dataset_facts` checks a fingerprint against its ``dataset.json`` once and keeps what planning
  needs: per-case spacings and shapes, the number of labels and training cases, and the normalisation
  scheme and ``use_mask_for_norm`` flag of every channel.
* :func:`configuration_json` and :func:`architecture_json` write one configuration (``plans["configurations"]
  [name]``) from a fitted patch, exactly with nnU-Net's keys and values.
* :func:`reader_writer` and :func:`default_dataset_name` fill the plans-level names.

The numbers themselves are decided in :mod:`nnseg.planning._planner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nnseg.dataset import DatasetSpec
from nnseg.errors import PlanningError
from nnseg.fingerprint import Fingerprint
from nnseg.planning._fields import building_blocks
from nnseg.planning._topology import Floats, Topology

__all__ = [
    "NETWORKS",
    "PLAIN_CONV_UNET",
    "RESIDUAL_ENCODER_UNET",
    "DatasetFacts",
    "Fit",
    "architecture_json",
    "configuration_json",
    "dataset_facts",
    "default_dataset_name",
    "normalization_scheme",
    "reader_writer",
]

PLAIN_CONV_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESIDUAL_ENCODER_UNET = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
#: network class -> (arch_kwargs key of the encoder depth, counted as residual blocks?)
NETWORKS = {PLAIN_CONV_UNET: ("n_conv_per_stage", False), RESIDUAL_ENCODER_UNET: ("n_blocks_per_stage", True)}

_NORMALIZATION = {
    "ct": "CTNormalization",
    "nonorm": "NoNormalization",
    "zscore": "ZScoreNormalization",
    "rescale_to_0_1": "RescaleTo01Normalization",
    "rgb_to_0_1": "RGBTo01Normalization",
}
_MASKABLE_NORMALIZATION = "ZScoreNormalization"
_MASK_CROP_THRESHOLD = 0.75
_READER_BY_ENDING = {".nii": "NibabelIO", ".png": "NaturalImage2DIO", ".bmp": "NaturalImage2DIO",
                     ".tif": "NaturalImage2DIO", ".tiff": "Tiff3DIO"}  # fmt: skip
_RESAMPLING_FN = "resample_data_or_seg_to_shape"


@dataclass(frozen=True, slots=True)
class Fit:
    """A patch fitted to the budget at one spacing.

    Args:
        topology: Patch, strides and kernel sizes.
        batch_size: Planned batch size (after the dataset cap and the minimum).
        estimate: Feature-map elements per sample (nnU-Net's memory proxy).
        budget: The feature-map budget it was fitted against.
    """

    topology: Topology
    batch_size: int
    estimate: int
    budget: float


@dataclass(frozen=True, slots=True)
class DatasetFacts:
    """What the planner needs from the fingerprint and the spec, checked once (see :func:`dataset_facts`)."""

    num_classes: int
    num_training: int
    spacings: tuple[tuple[float, ...], ...]
    shapes: tuple[tuple[int, ...], ...]
    normalization: tuple[str, ...]
    use_mask: tuple[bool, ...]


def normalization_scheme(channel_name: str) -> str:
    """Return nnU-Net's normalisation class for a channel name (case-insensitive; unknown names: z-score)."""
    return _NORMALIZATION.get(channel_name.lower(), _MASKABLE_NORMALIZATION)


def dataset_facts(fingerprint: Fingerprint, spec: DatasetSpec) -> DatasetFacts:
    """Check that ``fingerprint`` can be planned with ``spec`` and collect what planning needs.

    ``use_mask_for_norm`` is True for z-score channels when cropping to the nonzero region removed a
    quarter of the image or more (median relative size below 0.75), False otherwise.

    Raises:
        PlanningError: If the fingerprint has no cases, another number of channels than the spec, or a
            case whose spacing or shape is not three positive values.
    """
    if fingerprint.num_cases == 0:
        raise PlanningError(
            "cannot plan from a fingerprint with zero cases; expected at least one training case. "
            "Check that the dataset has images in imagesTr and recompute the fingerprint."
        )
    if fingerprint.num_channels != spec.num_channels:
        raise PlanningError(
            f"the fingerprint has intensity statistics for {fingerprint.num_channels} channel(s) but the "
            f"dataset.json declares {spec.num_channels} ({list(spec.channel_names)}); recompute the "
            "fingerprint for this dataset or pass the matching dataset.json."
        )
    bad = [i for i, (sp, sh) in enumerate(zip(fingerprint.spacings, fingerprint.shapes_after_crop))
           if len(sp) != 3 or len(sh) != 3 or min(sp) <= 0 or min(sh) < 1]  # fmt: skip
    if bad:
        raise PlanningError(
            f"fingerprint case {bad[0]} has spacing {list(fingerprint.spacings[bad[0]])} and shape "
            f"{list(fingerprint.shapes_after_crop[bad[0]])}; expected three positive spacings and three "
            "shape values >= 1 per case (2-D images are (1, y, x)). Recompute the fingerprint."
        )
    schemes = tuple(normalization_scheme(name) for name in spec.channel_names)
    masked = fingerprint.median_relative_size_after_cropping < _MASK_CROP_THRESHOLD
    return DatasetFacts(
        num_classes=len(spec.labels),
        num_training=spec.num_training,
        spacings=fingerprint.spacings,
        shapes=fingerprint.shapes_after_crop,
        normalization=schemes,
        use_mask=tuple(masked and s == _MASKABLE_NORMALIZATION for s in schemes),
    )


def _resampling_kwargs(is_seg: bool, order: int) -> dict[str, Any]:
    return {"is_seg": is_seg, "order": order, "order_z": 0, "force_separate_z": None}


def configuration_json(
    *,
    data_identifier: str,
    preprocessor_name: str,
    spacing: Floats,
    median: Floats,
    fit: Fit,
    facts: DatasetFacts,
    architecture: dict[str, Any],
    batch_dice: bool,
    integer_median: bool = False,
) -> dict[str, Any]:
    """Return one configuration in nnU-Net v2's schema (without the nnseg memory report).

    Args:
        integer_median: Write ``median_image_size_in_voxels`` as ints (nnU-Net does for ``3d_lowres``).
    """
    return {
        "data_identifier": data_identifier,
        "preprocessor_name": preprocessor_name,
        "batch_size": int(fit.batch_size),
        "patch_size": list(fit.topology.patch_size),
        "median_image_size_in_voxels": [int(v) if integer_median else float(v) for v in median],
        "spacing": [float(v) for v in spacing],
        "normalization_schemes": list(facts.normalization),
        "use_mask_for_norm": list(facts.use_mask),
        "resampling_fn_data": _RESAMPLING_FN,
        "resampling_fn_seg": _RESAMPLING_FN,
        "resampling_fn_data_kwargs": _resampling_kwargs(False, 3),
        "resampling_fn_seg_kwargs": _resampling_kwargs(True, 1),
        "resampling_fn_probabilities": _RESAMPLING_FN,
        "resampling_fn_probabilities_kwargs": _resampling_kwargs(False, 1),
        "architecture": architecture,
        "batch_dice": batch_dice,
    }


def architecture_json(
    network_class: str,
    topology: Topology,
    features: Sequence[int],
    encoder_per_stage: Sequence[int],
    decoder_per_stage: Sequence[int],
) -> dict[str, Any]:
    """Return the ``architecture`` entry of a configuration (class name, kwargs, imports to resolve).

    Args:
        network_class: :data:`PLAIN_CONV_UNET` or :data:`RESIDUAL_ENCODER_UNET`.
        topology: Strides and kernel sizes.
        features: Features of every stage.
        encoder_per_stage: Convs (plain) or residual blocks (residual) of every stage.
        decoder_per_stage: Convs of every decoder stage (one entry fewer than stages).
    """
    ndim = len(topology.patch_size)
    encoder_key, _ = NETWORKS[network_class]
    kwargs = {
        "n_stages": topology.num_stages,
        "features_per_stage": list(features),
        "conv_op": f"torch.nn.modules.conv.Conv{ndim}d",
        "kernel_sizes": [list(k) for k in topology.kernel_sizes],
        "strides": [list(s) for s in topology.strides],
        encoder_key: list(encoder_per_stage),
        "n_conv_per_stage_decoder": list(decoder_per_stage),
        **building_blocks(ndim),
    }
    return {
        "network_class_name": network_class,
        "arch_kwargs": kwargs,
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def default_dataset_name(spec: DatasetSpec) -> str:
    """Return the ``name`` entry of ``dataset.json``, or ``"nnseg_dataset"`` without one."""
    name = spec.extra.get("name")
    return name if isinstance(name, str) and name else "nnseg_dataset"


def reader_writer(spec: DatasetSpec) -> str:
    """Return nnU-Net's reader/writer name for a dataset: dataset.json's override, else by file ending."""
    override = spec.extra.get("overwrite_image_reader_writer")
    if isinstance(override, str) and override != "None":
        return override
    return _READER_BY_ENDING.get(spec.file_ending.lower(), "SimpleITKIO")
