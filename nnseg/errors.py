"""The exceptions nnseg raises on purpose.

Every error class subclasses both :class:`NnsegError` and the builtin exception a caller would naturally
catch, so ``except NnsegError`` and ``except ValueError`` both work. Messages follow one shape: what is
wrong, where (file, case id, argument), what was expected, what was found, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "FingerprintError",
    "ImageIOError",
    "LoaderError",
    "LockError",
    "ModelZipError",
    "NnsegError",
    "PlanningError",
    "PlansError",
    "StoreError",
    "WriteError",
]


class NnsegError(Exception):
    """Base class of every error nnseg raises on purpose."""


class ConfigError(NnsegError, ValueError):
    """An argument or configuration value is out of range or of the wrong kind."""


class ImageIOError(NnsegError, OSError):
    """An image or label file cannot be read or written."""


class DatasetError(NnsegError, ValueError):
    """The raw dataset folder, one of its files, or its dataset.json is not usable."""


class FingerprintError(NnsegError, ValueError):
    """A fingerprint cannot be computed, loaded, or merged."""


class PlansError(NnsegError, ValueError):
    """Plans are malformed, from an unsupported schema, or lack a configuration."""


class PlanningError(NnsegError, ValueError):
    """The planner cannot produce a plan for this fingerprint and budget."""


class StoreError(NnsegError, RuntimeError):
    """A preprocessed store is missing, incomplete, or was built from other plans."""


class CheckpointError(NnsegError, RuntimeError):
    """A checkpoint cannot be read or does not match what it is loaded into."""


class LoaderError(NnsegError, RuntimeError):
    """A training or validation batch could not be produced (the message names the step and the case)."""


class ModelZipError(NnsegError, ValueError):
    """A model zip cannot be written or installed (unsafe entries, too large, damaged, incomplete)."""


class WriteError(NnsegError, OSError):
    """A file could not be written completely (disk full, file-size limit, failed device); nothing was kept.

    ``errno`` is ``ENOSPC`` (disk full), ``EFBIG`` (file-size limit) or the failing call's own value.
    """


class LockError(NnsegError, RuntimeError):
    """Another live process holds the lock of the work this process was asked to do (the message names it)."""
