"""Model zips: share a trained model as one file, and install one safely.

``export_model`` packs an nnseg run root (``WORK/runs/<plans>__<configuration>__<run>/`` with its ``fold_<k>/``
run folders) into a zip: per fold the chosen checkpoint, ``run.json``, the training log and curve and the
final-validation summaries, plus cross-validation summaries and postprocessing decisions when present, and a
top-level ``nnseg_model.json`` manifest that records the SHA-256 of every file.

``import_model`` installs such a zip, or one written by nnU-Net's ``nnUNetv2_export_model_to_zip``, into a
folder. Unlike a plain ``extractall`` it refuses entries that would land outside the folder, links, archives
that expand beyond a stated size, and checksum mismatches; it extracts to a temporary folder first and moves
the result into place only when everything is complete, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nnseg._integrity import sha256_file
from nnseg.errors import ModelZipError

__all__ = ["DEFAULT_MAX_BYTES", "ImportedModels", "export_model", "import_model"]

DEFAULT_MAX_BYTES = 50 * 1024**3
"""Largest total size an imported zip may expand to (50 GiB); ``import_model(max_bytes=...)`` changes it."""
MANIFEST_NAME = "nnseg_model.json"
_FORMAT = "nnseg-model-zip"
_FORMAT_VERSION = 1
_CHECKPOINTS = ("final", "best", "latest")
# files of a run folder worth shipping besides the checkpoint (what a user wants to see of the training)
_RUN_FILES = ("run.json", "metrics.jsonl", "progress.png", "validation/summary.json",
              "validation/summary_preprocessed.json")  # fmt: skip
_ROOT_GLOBS = ("crossval_results_folds_*/summary.json", "crossval_results_folds_*/postprocessing.json")


@dataclass(frozen=True)
class ImportedModels:
    """What :func:`import_model` installed.

    Args:
        root: The folder the zip was installed into.
        nnseg_runs: Run roots of nnseg models (folders of ``fold_<k>/`` runs), for ``nnseg predict -m``.
        nnunet_models: nnU-Net trained model folders (``plans.json``, ``dataset.json``, ``fold_<k>/``).
    """

    root: Path
    nnseg_runs: tuple[Path, ...]
    nnunet_models: tuple[Path, ...]

    @property
    def models(self) -> tuple[Path, ...]:
        """Every installed model folder, nnseg runs first."""
        return self.nnseg_runs + self.nnunet_models


# ------------------------------------------------------------------------------------------------- export
def export_model(
    run_root: str | os.PathLike[str],
    output_zip: str | os.PathLike[str],
    *,
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "final",
) -> Path:
    """Write ``run_root``'s folds with their ``checkpoint_<checkpoint>.pt`` into ``output_zip`` (atomically).

    Args:
        run_root: An nnseg run root (a folder of ``fold_<k>/`` run folders) or a single run folder.
        output_zip: The zip to write; its folder is created if needed.
        folds: Folds to include (None: every fold holding the checkpoint).
        checkpoint: ``"final"``, ``"best"`` or ``"latest"``.

    Returns:
        The path of the zip.

    Raises:
        ModelZipError: If ``run_root`` is not a run root, a requested fold or its checkpoint is missing, or the
            checkpoint name is unknown.
    """
    root, output = Path(run_root), Path(output_zip)
    if checkpoint not in _CHECKPOINTS:
        raise ModelZipError(f"export-model: --checkpoint must be one of {list(_CHECKPOINTS)}; got {checkpoint!r}.")
    fold_dirs = _fold_dirs(root, folds, checkpoint)
    files = list(_export_files(root, fold_dirs, checkpoint))
    manifest = {
        "format": _FORMAT, "format_version": _FORMAT_VERSION, "model": root.resolve().name,
        "folds": [d.name.removeprefix("fold_") if d != root else None for d in fold_dirs], "checkpoint": checkpoint,
        "files": {arcname: sha256_file(path) for path, arcname in files},
    }  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path, arcname in files:
                archive.write(path, arcname)
            archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2))
        os.replace(temporary, output)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return output


def _fold_dirs(root: Path, folds: Sequence[int | str] | None, checkpoint: str) -> list[Path]:
    name = f"checkpoint_{checkpoint}.pt"
    if not root.is_dir():
        raise ModelZipError(f"export-model: {root} is not a folder; expected an nnseg run root (with fold_<k>/).")
    if (root / name).is_file() and folds is None:
        return [root]  # a single run folder
    available = {d.name.removeprefix("fold_"): d for d in sorted(root.glob("fold_*")) if (d / name).is_file()}
    if folds is None:
        if not available:
            raise ModelZipError(
                f"export-model: {root} has no fold_<k>/{name}; point it at a run root of nnseg runs, or choose "
                "another --checkpoint (final, best, latest)."
            )
        return list(available.values())
    missing = [str(f) for f in folds if str(f) not in available]
    if missing:
        raise ModelZipError(
            f"export-model: fold(s) {missing} of {root} have no {name}; folds with it: {sorted(available) or 'none'}."
            " Train them first, or leave them out of -f."
        )
    return [available[str(f)] for f in folds]


def _export_files(root: Path, fold_dirs: list[Path], checkpoint: str) -> Iterator[tuple[Path, str]]:
    top = PurePosixPath(root.resolve().name)
    for fold_dir in fold_dirs:
        prefix = top if fold_dir == root else top / fold_dir.name
        yield fold_dir / f"checkpoint_{checkpoint}.pt", str(prefix / f"checkpoint_{checkpoint}.pt")
        for relative in _RUN_FILES:
            if (fold_dir / relative).is_file():
                yield fold_dir / relative, str(prefix / relative)
    for pattern in _ROOT_GLOBS:
        for path in sorted(root.glob(pattern)):
            yield path, str(top / path.relative_to(root).as_posix())


# ------------------------------------------------------------------------------------------------- import
def import_model(
    zip_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    overwrite: bool = False,
) -> ImportedModels:
    """Install a model zip (nnseg's or nnU-Net's) into ``output_dir``.

    Args:
        zip_path: The zip.
        output_dir: Where to install; top-level entries of the zip become folders of it.
        max_bytes: Refuse archives whose files add up to more than this many bytes.
        overwrite: Replace files that already exist in ``output_dir`` (default: refuse). Other files there are
            kept, so several models install into one folder, as into nnU-Net's results folder.

    Returns:
        The installed model folders.

    Raises:
        ModelZipError: If the file is not a zip, holds an entry outside ``output_dir``, a link, more than
            ``max_bytes``, a damaged or tampered file, a model folder without ``plans.json``, or would replace an
            existing folder without ``overwrite``. Nothing is left in ``output_dir`` then.
    """
    source, target = Path(zip_path), Path(output_dir)
    archive = _open_zip(source)
    with archive:
        members = _checked_members(archive, source, max_bytes)
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=target))
        try:
            _extract(archive, members, staging, source, max_bytes)
            _verify_manifest(staging, source)
            found = _find_models(staging, source)
            _move_into_place(staging, target, overwrite, source)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # only our own temporary folder
    return ImportedModels(target, tuple(target / p for p in found[0]), tuple(target / p for p in found[1]))


def _open_zip(source: Path) -> zipfile.ZipFile:
    if not source.is_file():
        raise ModelZipError(f"import-model: {source} does not exist; expected a model zip.")
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelZipError(
            f"import-model: {source} is not a readable zip ({err}); it is truncated or not a model zip. "
            "Download or export it again."
        ) from err


def _checked_members(archive: zipfile.ZipFile, source: Path, max_bytes: int) -> list[zipfile.ZipInfo]:
    members, total = [], 0
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if not parts or name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts or "\x00" in name:
            raise ModelZipError(
                f"import-model: {source} holds the entry {name!r}, which would land outside the target folder; "
                "refusing the whole archive. Use a zip written by `nnseg export-model` or nnU-Net's exporter."
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ModelZipError(
                f"import-model: {source} holds a link {name!r}; links could point outside the target folder, so "
                "the archive is refused. Re-export the model without links."
            )
        total += info.file_size
        if total > max_bytes:
            raise ModelZipError(
                f"import-model: {source} expands to more than {max_bytes} bytes (the limit); refusing it. Pass a "
                "larger limit (--max-size-gb) if you trust the archive."
            )
        if not info.is_dir():
            members.append(info)
    if not members:
        raise ModelZipError(f"import-model: {source} is empty; expected a model zip.")
    return members


def _extract(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], staging: Path, source: Path,
             max_bytes: int) -> None:  # fmt: skip
    written = 0
    for info in members:
        destination = staging.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(info) as stream, destination.open("wb") as out:
                for block in iter(lambda: stream.read(1 << 20), b""):  # noqa: B023 (consumed in this iteration)
                    written += len(block)
                    if written > max_bytes:
                        raise ModelZipError(
                            f"import-model: {source} expands to more than {max_bytes} bytes while extracting "
                            f"({info.filename}); refusing it."
                        )
                    out.write(block)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
            raise ModelZipError(
                f"import-model: {source}: the entry {info.filename!r} is damaged ({err}); download or export the "
                "model again."
            ) from err


def _verify_manifest(staging: Path, source: Path) -> None:
    manifest_path = staging / MANIFEST_NAME
    if not manifest_path.is_file():
        return  # nnU-Net's zips have no manifest
    try:
        manifest = json.loads(manifest_path.read_text())
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as err:
        raise ModelZipError(f"import-model: {source}: {MANIFEST_NAME} is not a valid manifest ({err}).") from err
    if manifest.get("format_version", 0) > _FORMAT_VERSION:
        raise ModelZipError(
            f"import-model: {source} is a model zip of format version {manifest.get('format_version')}; this nnseg "
            f"reads up to {_FORMAT_VERSION}. Upgrade nnseg."
        )
    for name, expected in files.items():
        path = staging.joinpath(*PurePosixPath(name).parts)
        actual = sha256_file(path) if path.is_file() else "missing"
        if actual != expected:
            raise ModelZipError(
                f"import-model: {source}: {name} is {'missing' if actual == 'missing' else 'damaged'} (its "
                f"SHA-256 does not match {MANIFEST_NAME}); download or export the model again."
            )
    manifest_path.unlink()


def _find_models(staging: Path, source: Path) -> tuple[list[Path], list[Path]]:
    """Relative paths of nnseg run roots and nnU-Net model folders under ``staging``."""
    nnseg_runs = sorted({_run_root(p.parent).relative_to(staging) for p in staging.rglob("checkpoint_*.pt")})
    nnunet_folds = sorted(
        {p.parent.parent for p in staging.rglob("checkpoint_*.pth") if p.parent.name.startswith("fold_")}
    )
    nnunet_models = []
    for folder in nnunet_folds:
        missing = [name for name in ("plans.json", "dataset.json") if not (folder / name).is_file()]
        if missing:
            raise ModelZipError(
                f"import-model: {source}: the model folder {folder.relative_to(staging).as_posix()} has no "
                f"{' and no '.join(missing)}; it cannot be used for prediction. Re-export it with its plans."
            )
        nnunet_models.append(folder.relative_to(staging))
    if not nnseg_runs and not nnunet_models:
        raise ModelZipError(
            f"import-model: {source} holds no model (no nnseg checkpoint_*.pt, no nnU-Net fold_<k>/checkpoint_*.pth)."
        )
    return nnseg_runs, nnunet_models


def _run_root(run_folder: Path) -> Path:
    return run_folder.parent if run_folder.name.startswith("fold_") else run_folder


def _move_into_place(staging: Path, target: Path, overwrite: bool, source: Path) -> None:
    """Move every extracted file to the same place under ``target`` (merging with folders already there)."""
    files = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    existing = [f.as_posix() for f in files if (target / f).exists()]
    if existing and not overwrite:
        raise ModelZipError(
            f"import-model: {target} already holds {existing[:3]}{' ...' if len(existing) > 3 else ''}; installing "
            f"{source} would replace them. Pass --overwrite, or choose another output folder."
        )
    for relative in files:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / relative, target / relative)
