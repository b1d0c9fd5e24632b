"""The registry's error tree.

Every error the public API raises is a :class:`RegistryError`. Each leaf also
inherits the builtin exception that the original documentation (or a Python
user) expects, so ``except ValueError`` / ``except KeyError`` code written
against the original JSON registry keeps working.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Root of every error raised by the registry.

    Args:
        *args: the message (what went wrong, naming the offending value).
        hint: what to do next, for Python callers (e.g. ``stop it with stop_ab_test('ab_1')``);
            appended to the message.
        cli_hint: the same advice as ``cfreg`` commands; the CLI shows it instead of ``hint``.
    """

    code = "registry_error"

    def __init__(self, *args: object, hint: str | None = None, cli_hint: str | None = None) -> None:
        super().__init__(*args)
        self.hint = hint
        self.cli_hint = cli_hint

    @property
    def message(self) -> str:
        """The message without the hint."""
        return " ".join(str(arg) for arg in self.args)

    def __str__(self) -> str:  # KeyError quotes its message; keep messages readable
        return f"{self.message}; {self.hint}" if self.hint else self.message

    def cli_message(self) -> str:
        """The message with the hint for ``cfreg`` users (falls back to the Python hint)."""
        hint = self.cli_hint or self.hint
        return f"{self.message}; {hint}" if hint else self.message


class InvalidArgumentError(RegistryError, ValueError):
    """A caller-supplied value is malformed (ids, metric names, statuses, sort keys...)."""

    code = "invalid_argument"


class NonFiniteNumberError(InvalidArgumentError):
    """A bare ``NaN``/``Infinity`` token in a JSON file where they are refused (the cause of the
    ``ImportFormatError`` a strict JSON read raises)."""

    code = "non_finite_number"


class UnknownMetricError(InvalidArgumentError):
    """No registered model has this metric (usually a typo); ``known`` lists the metrics that exist."""

    code = "unknown_metric"

    def __init__(self, *args: object, known: list[str] | None = None, **hints: str | None) -> None:
        super().__init__(*args, **hints)
        self.known = list(known or [])


class UnknownModelTypeError(InvalidArgumentError):
    """A model type that is neither registered nor in the registry; ``known`` lists the types."""

    code = "unknown_model_type"

    def __init__(self, *args: object, known: list[str] | None = None, **hints: str | None) -> None:
        super().__init__(*args, **hints)
        self.known = list(known or [])


class InvalidArtifactsError(RegistryError, ValueError):
    """Artifact files are missing, unreadable, mis-shaped or unsafe."""

    code = "invalid_artifacts"


class ChecksumMismatchError(InvalidArtifactsError):
    """An artifact file no longer matches the sha256 recorded at registration."""

    code = "checksum_mismatch"


class UnsafeFileError(InvalidArtifactsError):
    """A file to read is not a regular file (a FIFO, device, folder), exceeds its size
    limit, or is a symlink resolving outside the folder it belongs to."""

    code = "unsafe_file"


class ArtifactStoreError(RegistryError, OSError):
    """The artifact store (S3, GCS, a ``file://`` folder...) cannot be reached, or refused an operation."""

    code = "artifact_store_error"


class ModelNotFoundError(RegistryError, KeyError):
    """No model (or embeddings version, or A/B test) with the given id."""

    code = "not_found"

    @classmethod
    def unknown_model(cls, model_id: str) -> ModelNotFoundError:
        """The error for a model id the registry does not hold, with where to find the ids."""
        return cls(f"Model {model_id!r} not found in registry", hint="list_models() shows the registered ids",
                   cli_hint="`cfreg list` shows the registered ids")


class FilterSyntaxError(InvalidArgumentError):
    """A search filter or order_by entry could not be parsed; the message points at the token."""

    code = "bad_filter"

    def __init__(self, text: str, position: int, message: str) -> None:
        self.text = text
        self.position = position
        self.reason = message
        super().__init__(f"{message} at position {position}:\n  {text}\n  {' ' * position}^")


class ModelExistsError(RegistryError, ValueError):
    """A model or embeddings version with that id already exists with different content."""

    code = "exists"


class ModelInUseError(RegistryError, ValueError):
    """The model is the current best, in a running A/B test, or shares files still in use."""

    code = "in_use"


class EmbeddingsNotFoundError(ModelNotFoundError):
    """No BERT embeddings version with the given id."""

    code = "embeddings_not_found"


class ABTestNotFoundError(ModelNotFoundError):
    """No A/B test with the given id (or none running when the id was left out)."""

    code = "ab_test_not_found"


class AliasNotFoundError(ModelNotFoundError):
    """No alias with the given name."""

    code = "alias_not_found"


class InvalidStateError(ModelInUseError):
    """The operation does not fit the object's state: a model that is not active, an A/B test
    already running. (A ``ModelInUseError``, so existing ``except`` clauses still catch it.)"""

    code = "invalid_state"


class AliasInUseError(ModelInUseError):
    """The alias is an arm of a running A/B test (``test_id`` names it) and cannot be deleted."""

    code = "alias_in_use"

    def __init__(self, *args: object, test_id: str | None = None, **hints: str | None) -> None:
        super().__init__(*args, **hints)
        self.test_id = test_id


class ConflictError(RegistryError, ValueError):
    """Someone else changed the state the caller based its request on."""

    code = "conflict"


class AliasConflictError(ConflictError):
    """Compare-and-set on an alias failed: it no longer points where the caller expected."""

    code = "alias_conflict"

    def __init__(self, alias: str, current: str | None, expected: str | None) -> None:
        self.alias, self.current, self.expected = alias, current, expected
        where = f"points at {current!r}" if current is not None else "does not exist"
        wanted = f"{expected!r}" if expected is not None else "no alias"
        super().__init__(f"alias {alias!r} {where}, not {wanted}: someone moved it since you looked; read it again and retry")


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


class ChurnLimitError(RegistryError, ValueError):
    """A promotion was refused: the candidate's churn against the current best exceeds ``max_churn``.

    ``report`` holds the :class:`registry.diff.DiffReport` that measured it.
    """

    code = "churn_limit"

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class ReadOnlyQueryError(RegistryError, ValueError):
    """A statement given to the read-only SQL command tried to write."""

    code = "read_only"


class QueryTimeoutError(RegistryError, TimeoutError):
    """A read-only SQL query ran past its statement timeout and was cancelled."""

    code = "query_timeout"


class ReadOnlySqlUnavailableError(RegistryError):
    """The database cannot enforce read-only SQL for this registry yet (PostgreSQL: no reader role)."""

    code = "read_only_unavailable"


__all__ = [
    "ABTestNotFoundError",
    "AliasConflictError",
    "AliasInUseError",
    "AliasNotFoundError",
    "ConflictError",
    "ChecksumMismatchError",
    "EmbeddingsNotFoundError",
    "ChurnLimitError",
    "ExportError",
    "FilterSyntaxError",
    "ImportFormatError",
    "InvalidArgumentError",
    "InvalidArtifactsError",
    "InvalidStateError",
    "ModelExistsError",
    "ModelInUseError",
    "ModelNotFoundError",
    "NoModelLoadedError",
    "NonFiniteNumberError",
    "QueryTimeoutError",
    "NoUserEvaluationError",
    "ReadOnlyQueryError",
    "ReadOnlySqlUnavailableError",
    "RegistryBusyError",
    "RegistryError",
    "RegistryNotFoundError",
    "SchemaVersionError",
    "UnknownMetricError",
    "UnknownModelTypeError",
    "UnsafeFileError",
]
