"""Per-part manifests of a prediction folder, and the status of a (sharded) prediction run.

Each part of a run writes only its own manifest, ``<output>/nnseg_parts/part_<K>_of_<N>.json``: the model
identity, the settings that change the outputs, every case id of the input folder, the ids the part owns and,
per finished case, the SHA-256 of each file it wrote. No file is shared between parts, so parts never
overwrite each other's records. A case is done only when its record exists and every file still has the
recorded checksum: an output that another model, other settings or another tool left under the same name,
and a damaged one (truncated, changed), is redone, never reported complete. A part that never started is
still accounted for (its cases follow from the recorded case list).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnseg._atomic import atomic_write_json
from nnseg._integrity import sha256_file
from nnseg.errors import CasesFailedError, PredictionError
from nnseg.inference._settings import upgrade_manifest_settings
from nnseg.sharding import Shard

__all__ = [
    "PARTS_DIR",
    "CasesFailedError",
    "PartManifest",
    "PartStatus",
    "PredictionError",
    "PredictionStatus",
    "prediction_status",
]

PARTS_DIR = "nnseg_parts"
MANIFEST_VERSION = 3
"""3: with ``done`` (checksums of each finished case's files); 2: settings as
:meth:`InferenceSettings.manifest_json` records them; 1 (nnseg 0.x). Older ones are read and upgraded (their
outputs carry no record, so they are redone once)."""
_MANIFEST_NAME = re.compile(r"part_(\d+)_of_(\d+)\.json")


@dataclass(frozen=True, slots=True)
class PartManifest:
    """What one part of a prediction run owns and how it predicts.

    Args:
        shard: Which part.
        model_id: :meth:`~nnseg.inference.TrainedModel.identity` of the model.
        settings: Output-relevant settings (file ending, mirroring, step size, probabilities, model source).
        all_case_ids: Every case id of the input folder, sorted.
        owned_case_ids: The ids this part predicts (``shard.select(all_case_ids)``).
        done: Finished case id -> {output file name: SHA-256 of the file as written}.
    """

    shard: Shard
    model_id: str
    settings: Mapping[str, Any]
    all_case_ids: tuple[str, ...]
    owned_case_ids: tuple[str, ...] = field(default=())
    done: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @staticmethod
    def path(output_dir: Path, shard: Shard) -> Path:
        """Where the manifest of ``shard`` lives in ``output_dir``."""
        width = len(str(shard.count - 1))
        return output_dir / PARTS_DIR / f"part_{shard.index:0{width}d}_of_{shard.count}.json"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "format_version": MANIFEST_VERSION, "part_id": self.shard.index, "num_parts": self.shard.count,
            "model_id": self.model_id, "settings": dict(self.settings), "all_case_ids": list(self.all_case_ids),
            "owned_case_ids": list(self.owned_case_ids),
            "done": {case: dict(files) for case, files in sorted(self.done.items())},
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "part manifest") -> PartManifest:
        """Parse :meth:`to_json` output.

        Manifests of an earlier format are read with their settings upgraded to the current names, so folders
        predicted by an earlier nnseg can be completed with the same settings.

        Raises:
            PredictionError: If a key is missing or malformed, or the manifest is of a newer format.
        """
        version = data.get("format_version", 1) if isinstance(data, Mapping) else 1
        if not isinstance(version, int) or version > MANIFEST_VERSION:
            raise PredictionError(
                f"{where}: part manifest format_version {version!r} is not one this nnseg reads (1 to "
                f"{MANIFEST_VERSION}); it was written by a newer nnseg. Upgrade nnseg, or use a new output folder."
            )
        try:
            settings = upgrade_manifest_settings(dict(data["settings"]))
            done = {str(case): {str(name): str(digest) for name, digest in dict(files).items()}
                    for case, files in dict(data.get("done", {})).items()}  # fmt: skip
            return cls(Shard(int(data["part_id"]), int(data["num_parts"])), str(data["model_id"]),
                       settings, tuple(data["all_case_ids"]), tuple(data["owned_case_ids"]), done)  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise PredictionError(
                f"{where}: malformed part manifest ({err!r}); delete it and rerun that part."
            ) from err

    def save(self, output_dir: Path) -> None:
        """Write the manifest atomically into ``output_dir``."""
        atomic_write_json(self.path(output_dir, self.shard), self.to_json())

    @classmethod
    def load_all(cls, output_dir: Path) -> list[PartManifest]:
        """Every manifest in ``output_dir``, sorted by (num_parts, part_id).

        Raises:
            PredictionError: If a manifest is not valid JSON or malformed.
        """
        folder = output_dir / PARTS_DIR
        manifests = []
        for path in sorted(folder.glob("part_*_of_*.json")) if folder.is_dir() else []:
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise PredictionError(f"{path} is not valid JSON ({err.msg}); delete it and rerun that part.") from err
            manifests.append(cls.from_json(data, where=str(path)))
        return sorted(manifests, key=lambda m: (m.shard.count, m.shard.index))


@dataclass(frozen=True, slots=True)
class PartStatus:
    """Progress of one part.

    Args:
        shard: The part.
        started: Whether the part has written its manifest.
        done: Owned cases whose outputs are complete (recorded by this run, checksums intact).
        missing: Owned cases without complete outputs (``redo`` included).
        redo: Owned cases whose files exist but are not this run's or are damaged; they are predicted again.
    """

    shard: Shard
    started: bool
    done: tuple[str, ...]
    missing: tuple[str, ...]
    redo: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PredictionStatus:
    """Progress of a prediction run, part by part.

    Args:
        output_dir: The prediction folder.
        parts: One entry per part ``0 .. num_parts - 1`` (started or not).
    """

    output_dir: Path
    parts: tuple[PartStatus, ...]

    @property
    def is_complete(self) -> bool:
        """Whether every part started and every case has complete outputs."""
        return bool(self.parts) and all(p.started and not p.missing for p in self.parts)

    @property
    def missing(self) -> tuple[str, ...]:
        """Every case without complete outputs, sorted."""
        return tuple(sorted(c for p in self.parts for c in p.missing))

    def summary(self) -> list[str]:
        """Human-readable lines: one per part, then a verdict."""
        if not self.parts:
            return [f"{self.output_dir}: no nnseg prediction run found (no {PARTS_DIR}/ manifests)."]
        lines = []
        for part in self.parts:
            state = "not started" if not part.started else ("complete" if not part.missing else "incomplete")
            total = len(part.done) + len(part.missing)
            line = f"part {part.shard.index} of {part.shard.count}: {state}, {len(part.done)}/{total} case(s) done"
            line += f"; missing: {', '.join(part.missing)}" if part.missing else ""
            line += f" (outputs not written by this run, or damaged: {', '.join(part.redo)})" if part.redo else ""
            lines.append(line)
        verdict = "COMPLETE" if self.is_complete else f"INCOMPLETE: {len(self.missing)} case(s) missing"
        lines.append(f"{self.output_dir}: {verdict}")
        return lines


def case_outputs(output_dir: Path, case_id: str, settings: Mapping[str, Any]) -> list[Path]:
    """The files one case produces: ``<case><ending>`` plus ``<case>.npz`` / ``<case>.json`` with probabilities."""
    files = [output_dir / f"{case_id}{settings['file_ending']}"]
    if settings.get("save_probabilities"):
        files += [output_dir / f"{case_id}.npz", output_dir / f"{case_id}.json"]
    return files


def case_problem(output_dir: Path, case_id: str, manifest: PartManifest) -> str | None:
    """None when ``case_id`` is done: recorded in ``manifest`` and every file has its recorded checksum.

    Otherwise why it must be predicted: ``"missing"`` (no output file at all), or a reason naming the file that
    is not this run's output or is damaged.
    """
    files = case_outputs(output_dir, case_id, manifest.settings)
    present = [path for path in files if path.is_file()]
    if not present:
        return "missing"
    record = manifest.done.get(case_id)
    if record is None:
        return f"{present[0].name} was not written by this run (another model, other settings, or another tool)"
    for path in files:
        if path.name not in record or not path.is_file():
            return f"{path.name} is missing or was not recorded"
        if sha256_file(path) != record[path.name]:
            return f"{path.name} differs from what this run wrote (damaged or replaced)"
    return None


def record_case(output_dir: Path, case_id: str, manifest: PartManifest) -> PartManifest:
    """``manifest`` with the checksums of ``case_id``'s outputs recorded, saved into ``output_dir``."""
    files = {path.name: sha256_file(path) for path in case_outputs(output_dir, case_id, manifest.settings)}
    updated = dataclasses.replace(manifest, done={**manifest.done, case_id: files})
    updated.save(output_dir)
    return updated


def prediction_status(output_dir: str | os.PathLike[str]) -> PredictionStatus:
    """Read the per-part manifests of ``output_dir`` and check which owned cases have complete outputs.

    Raises:
        PredictionError: If manifests of different part counts or models are mixed in the folder.
    """
    root = Path(output_dir)
    manifests = PartManifest.load_all(root)
    if not manifests:
        return PredictionStatus(root, ())
    check_consistent(manifests, root)
    first = manifests[0]
    by_index = {m.shard.index: m for m in manifests}
    parts = []
    for index in range(first.shard.count):
        shard = Shard(index, first.shard.count)
        manifest = by_index.get(index)
        owned = manifest.owned_case_ids if manifest else tuple(shard.select(first.all_case_ids))
        problems = {c: case_problem(root, c, manifest or dataclasses.replace(first, done={})) for c in owned}
        done = tuple(c for c in owned if problems[c] is None)
        redo = tuple(c for c in owned if problems[c] not in (None, "missing"))
        parts.append(PartStatus(shard, manifest is not None, done, tuple(c for c in owned if c not in done), redo))
    return PredictionStatus(root, tuple(parts))


def check_consistent(manifests: Sequence[PartManifest], output_dir: Path) -> None:
    """Raise unless every manifest is of one model, one part count and one input case list.

    Raises:
        PredictionError: Naming the manifests that disagree.
    """
    first = manifests[0]
    for other in manifests[1:]:
        for what, a, b in (("number of parts", first.shard.count, other.shard.count),
                           ("model", first.model_id, other.model_id),
                           ("input cases", first.all_case_ids, other.all_case_ids)):  # fmt: skip
            if a != b:
                raise PredictionError(
                    f"{output_dir}: parts of different runs are mixed ({what} differs between {first.shard} and "
                    f"{other.shard}); use one output folder per run, or delete {output_dir / PARTS_DIR} and the "
                    "outputs to start again."
                )
