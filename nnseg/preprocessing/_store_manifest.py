"""``StoreManifest`` (the ``store.json`` of a preprocessed store) and ``StoreStatus`` (done / missing / stale)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnseg._hashing import content_hash
from nnseg._version import __version__
from nnseg.dataset import DatasetSpec
from nnseg.errors import StoreError
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing._arrays import CLEVEL, CODEC
from nnseg.preprocessing._locations import location_classes

__all__ = ["FORMAT_VERSION", "MANIFEST_NAME", "StoreManifest", "StoreStatus", "check_compatible", "store_fields"]

FORMAT_VERSION = 1
MANIFEST_NAME = "store.json"


def store_fields(plan: ConfigurationPlan, spec: DatasetSpec) -> dict[str, Any]:
    """Everything that changes the bytes a store holds for a case, as a JSON dict.

    That is the plan's :meth:`~ConfigurationPlan.preprocessing_fields` (spacing, transposition, normalisation,
    resampling, intensity properties, ...) plus what the plan does not cover but the stored label map and
    class locations depend on: the dataset's labels, regions and ignore label (as the sampled classes) and
    the store's format version. Its :func:`content_hash` is the store's ``preprocessing_hash``.
    """
    classes = [list(c) if isinstance(c, tuple) else int(c) for c in location_classes(spec)]
    return {**plan.preprocessing_fields(), "location_classes": classes, "store_format_version": FORMAT_VERSION}


@dataclass(frozen=True, slots=True)
class StoreManifest:
    """The content of ``store.json``: what preprocessing a store holds.

    Args:
        preprocessing_hash: The store key: ``content_hash`` of :func:`store_fields` (the plan's preprocessing
            and the dataset's labels / regions). Two plans with the same key share a store.
        preprocessing_fields: The fields behind the hash (for humans and for error messages).
        configuration: Configuration name of the plan that created the store.
        data_identifier: Its ``data_identifier``.
        plans_name: Its plans name.
        chunk_patch_size: The patch size the array chunks are laid out for; kept fixed for the life of the
            store, so every case has the same layout whichever (equal-hash) plan writes it.
        created_by: ``"nnseg <version>"``.
        format_version: Version of this layout.
    """

    preprocessing_hash: str
    preprocessing_fields: Mapping[str, Any] = field(compare=False)
    configuration: str
    data_identifier: str
    plans_name: str
    chunk_patch_size: tuple[int, ...]
    created_by: str = f"nnseg {__version__}"
    format_version: int = FORMAT_VERSION

    @classmethod
    def for_plan(cls, plan: ConfigurationPlan, spec: DatasetSpec) -> StoreManifest:
        """Return the manifest a new store for ``plan`` on a dataset with ``spec`` gets."""
        fields = store_fields(plan, spec)
        return cls(
            preprocessing_hash=content_hash(fields),
            preprocessing_fields=fields,
            configuration=plan.name,
            data_identifier=plan.data_identifier,
            plans_name=plan.plans_name,
            chunk_patch_size=tuple(int(p) for p in plan.patch_size),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the JSON dict written to ``store.json``."""
        return {
            "format_version": self.format_version,
            "preprocessing_hash": self.preprocessing_hash,
            "configuration": self.configuration,
            "data_identifier": self.data_identifier,
            "plans_name": self.plans_name,
            "created_by": self.created_by,
            "array_format": {
                "library": "blosc2",
                "codec": CODEC.name,
                "clevel": CLEVEL,
                "filters": ["SHUFFLE"],
                "chunk_patch_size": list(self.chunk_patch_size),
            },  # fmt: skip
            "preprocessing_fields": dict(self.preprocessing_fields),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = MANIFEST_NAME) -> StoreManifest:
        """Parse a dict written by :meth:`to_json`.

        Raises:
            StoreError: If a key is missing or malformed.
        """
        try:
            return cls(
                preprocessing_hash=str(data["preprocessing_hash"]),
                preprocessing_fields=dict(data["preprocessing_fields"]),
                configuration=str(data["configuration"]),
                data_identifier=str(data["data_identifier"]),
                plans_name=str(data["plans_name"]),
                chunk_patch_size=tuple(int(p) for p in data["array_format"]["chunk_patch_size"]),
                created_by=str(data["created_by"]),
                format_version=int(data["format_version"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise StoreError(
                f"{where} is not a valid store manifest ({type(err).__name__}: {err}); pass overwrite=True to "
                "write a new one (case files are then rebuilt), or use a new store folder."
            ) from err


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """Which of the expected cases a store holds.

    ``done``, ``missing`` and ``stale`` split the expected ids (each sorted).

    Args:
        done: Complete cases, built with the store's preprocessing.
        missing: Cases with no file at all.
        stale: Cases with something on disk but no valid completion marker: pieces without the marker,
            leftover temporary files, or a marker from other preprocessing. Preprocessing redoes them.
        extra: Ids that have files in the store but were not expected (other shards' cases, removed cases);
            left alone.
    """

    done: tuple[str, ...]
    missing: tuple[str, ...]
    stale: tuple[str, ...]
    extra: tuple[str, ...] = ()

    @property
    def is_complete(self) -> bool:
        """Whether every expected case is done."""
        return not self.missing and not self.stale

    @property
    def todo(self) -> tuple[str, ...]:
        """The expected cases still to be (re)built: ``missing`` and ``stale``, sorted."""
        return tuple(sorted(self.missing + self.stale))

    def summary(self) -> str:
        """One line: ``"6 done, 1 missing, 1 stale"``."""
        return f"{len(self.done)} done, {len(self.missing)} missing, {len(self.stale)} stale"


def check_compatible(existing: StoreManifest, wanted: StoreManifest, plan: ConfigurationPlan, root: Path) -> None:
    """Raise StoreError unless an existing manifest holds the same preprocessing in a readable format."""
    if existing.format_version > FORMAT_VERSION:
        raise StoreError(
            f"preprocessed store {root} has format version {existing.format_version}, newer than this nnseg "
            f"reads ({FORMAT_VERSION}); upgrade nnseg, use a new store folder, or pass overwrite=True."
        )
    if existing.preprocessing_hash != wanted.preprocessing_hash:
        differing = sorted(
            key for key in set(existing.preprocessing_fields) | set(wanted.preprocessing_fields)
            if existing.preprocessing_fields.get(key) != wanted.preprocessing_fields.get(key)
        )  # fmt: skip
        raise StoreError(
            f"preprocessed store {root} was built for preprocessing {existing.preprocessing_hash}, got "
            f"{wanted.preprocessing_hash}. Use a new store folder or pass overwrite=True. (The store holds "
            f"configuration {existing.configuration!r} of plans {existing.plans_name!r}; configuration "
            f"{plan.name!r} of plans {plan.plans_name!r} differs in: {', '.join(differing) or 'unknown fields'}.)"
        )
