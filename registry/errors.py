"""The registry's error tree.

Every error the public API raises is a :class:`RegistryError`. Each leaf also
inherits the builtin exception that the original documentation (or a Python
user) expects, so ``except ValueError`` / ``except KeyError`` code written
against the original JSON registry keeps working.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Root of every error raised by the registry."""

    code = "registry_error"

    def __str__(self) -> str:  # KeyError quotes its message; keep messages readable
        return " ".join(str(arg) for arg in self.args)


class InvalidArgumentError(RegistryError, ValueError):
    """A caller-supplied value is malformed (ids, metric names, statuses, sort keys...)."""

    code = "invalid_argument"


class InvalidArtifactsError(RegistryError, ValueError):
    """Artifact files are missing, unreadable, mis-shaped or unsafe."""

    code = "invalid_artifacts"


class ChecksumMismatchError(InvalidArtifactsError):
    """An artifact file no longer matches the sha256 recorded at registration."""

    code = "checksum_mismatch"


class ModelNotFoundError(RegistryError, KeyError):
    """No model (or embeddings version, or A/B test) with the given id."""

    code = "not_found"


class ModelExistsError(RegistryError, ValueError):
    """A model or embeddings version with that id already exists with different content."""

    code = "exists"


class ModelInUseError(RegistryError, ValueError):
    """The model is the current best, in a running A/B test, or shares files still in use."""

    code = "in_use"


class RegistryNotFoundError(RegistryError, FileNotFoundError):
    """The registry does not exist and may not be created."""

    code = "registry_not_found"


class SchemaVersionError(RegistryError):
    """The database schema is newer than this code (or otherwise unusable)."""

    code = "schema_version"


class RegistryBusyError(RegistryError, TimeoutError):
    """The database stayed locked (or kept failing serialization) past the retry budget."""

    code = "busy"


class NoModelLoadedError(RegistryError, ValueError):
    """The loader has no model to serve (no current best, or nothing loaded yet)."""

    code = "no_model"


class NoUserEvaluationError(RegistryError, ValueError):
    """A model has no per-user evaluation file (or not for the metric asked about)."""

    code = "no_user_evaluation"


class ExportError(RegistryError, OSError):
    """Writing ``registry.json`` / ``bert_registry.json`` or a backup file failed."""

    code = "export_error"


class ImportFormatError(RegistryError, ValueError):
    """A legacy ``registry.json`` or backup could not be parsed or validated."""

    code = "import_error"


class ReadOnlyQueryError(RegistryError, ValueError):
    """A statement given to the read-only SQL command tried to write."""

    code = "read_only"


__all__ = [
    "ChecksumMismatchError",
    "ExportError",
    "ImportFormatError",
    "InvalidArgumentError",
    "InvalidArtifactsError",
    "ModelExistsError",
    "ModelInUseError",
    "ModelNotFoundError",
    "NoModelLoadedError",
    "NoUserEvaluationError",
    "ReadOnlyQueryError",
    "RegistryBusyError",
    "RegistryError",
    "RegistryNotFoundError",
    "SchemaVersionError",
]
