"""Registry errors as HTTP answers: a stable ``code`` (the error class's ``code``) and a fitting status."""

from __future__ import annotations

from ..errors import (
    ChurnLimitError,
    ConflictError,
    ExportError,
    InvalidArgumentError,
    InvalidArtifactsError,
    ModelExistsError,
    ModelInUseError,
    ModelNotFoundError,
    NoModelLoadedError,
    RegistryBusyError,
    RegistryError,
    RegistryNotFoundError,
)

# First match wins: subclasses before their bases.
STATUS_BY_ERROR: tuple[tuple[type[RegistryError], int], ...] = (
    (ModelNotFoundError, 404),
    (RegistryNotFoundError, 404),
    (ModelExistsError, 409),
    (ModelInUseError, 409),
    (ConflictError, 409),
    (ChurnLimitError, 409),
    (NoModelLoadedError, 409),
    (InvalidArtifactsError, 422),
    (InvalidArgumentError, 422),
    (RegistryBusyError, 503),
    (ExportError, 500),
)


def status_for(error: RegistryError) -> int:
    """The HTTP status for a registry error (422 for other ValueErrors, else 500)."""
    for kind, status in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 422 if isinstance(error, ValueError) else 500


def error_body(code: str, message: str, kind: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error answer (schema ``ErrorResponse``)."""
    return {"error": {"code": code, "type": kind, "message": message}}


class WebError(Exception):
    """An HTTP-level refusal that is not a registry error (401, 403, 400...)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
