"""Bearer-token protection of the recommendation service's write endpoints.

The token comes from ``create_app(api_token=...)``, else ``$CFREG_SERVE_TOKEN``;
``cfreg serve --token-file PATH`` reads it from a file (:func:`read_token_file`).
With no token configured, write endpoints are open (a local development
service); :func:`registry.serving.serve` then warns when it listens on a
non-loopback interface.

Tokens are compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import InvalidArgumentError

logger = logging.getLogger(__name__)

ENV_TOKEN = "CFREG_SERVE_TOKEN"
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 4096
MAX_TOKEN_FILE_BYTES = 64 * 1024
# Characters of an RFC 6750 bearer token (b64token), so any token we accept can be sent in a header.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*", re.ASCII)

__all__ = ["ENV_TOKEN", "MIN_TOKEN_LENGTH", "read_token_file", "require_token", "resolve_token", "validate_token"]


def validate_token(token: str, source: str = "api_token") -> str:
    """Check a configured token: 16 to 4096 characters of ``A-Z a-z 0-9 - . _ ~ + /`` (then ``=`` padding).

    Raises:
        InvalidArgumentError: too short, too long, or other characters (whitespace, non-ASCII).
    """
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise InvalidArgumentError(
            f"{source}: a bearer token may hold only ASCII letters, digits and - . _ ~ + / (then = padding); "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        raise InvalidArgumentError(
            f"{source}: the token has {len(token)} characters; use {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH}"
        )
    return token


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token stored in a file (surrounding whitespace and the final newline are ignored).

    A file readable by other users is accepted with a warning.

    Raises:
        InvalidArgumentError: the file is missing, unreadable, too large, or holds no valid token.
    """
    file = Path(path)
    try:
        with open(file, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgumentError(f"token file {str(file)!r} is not a regular file")
            data = handle.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read the token file {str(file)!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise InvalidArgumentError(f"token file {str(file)!r} is larger than {MAX_TOKEN_FILE_BYTES} bytes")
    if info.st_mode & 0o077:
        logger.warning("token file %s is readable by other users (mode %o); chmod 600 it", file, info.st_mode & 0o777)
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise InvalidArgumentError(f"token file {str(file)!r} holds non-ASCII bytes") from None
    return validate_token(text, f"token file {str(file)!r}")


def resolve_token(api_token: str | None) -> str | None:
    """The token in force: ``api_token``, else ``$CFREG_SERVE_TOKEN``, else None (write endpoints open)."""
    if api_token is not None:
        return validate_token(api_token)
    from_env = os.environ.get(ENV_TOKEN)
    if from_env:
        return validate_token(from_env, f"${ENV_TOKEN}")
    return None


_bearer = HTTPBearer(auto_error=False, description="The service's API token (cfreg serve --token-file / $CFREG_SERVE_TOKEN).")


def require_token(token: str | None) -> Callable[..., None]:
    """A FastAPI dependency that answers 401 unless the request carries ``Authorization: Bearer <token>``.

    With ``token`` None the dependency lets every request through.
    """
    expected = None if token is None else token.encode("ascii")

    def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if expected is None:
            return
        given = credentials.credentials.encode("utf-8", "surrogateescape") if credentials is not None else b""
        if credentials is None or credentials.scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
            raise HTTPException(
                status_code=401,
                detail="a valid API token is required: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": 'Bearer realm="cfreg"'},
            )

    return check
