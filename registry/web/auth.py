"""Who may change the registry through the web app: bearer tokens, session cookies, CSRF.

Tokens come from ``$CFREG_UI_TOKEN`` (one token, identity ``operator``) or a file
(``--token-file`` / ``$CFREG_UI_TOKEN_FILE``) with one ``NAME TOKEN`` (or bare
``TOKEN``) per line; ``#`` starts a comment. No token configured means the app is
read-only. The API takes ``Authorization: Bearer <token>``; the pages take the
token once in a login form and keep a signed, expiring session cookie whose
signature is keyed by the token itself (changing the token ends its sessions).
Every form carries a CSRF token that must equal the value of a separate cookie
(double submit; both cookies are ``HttpOnly`` and ``SameSite=Strict``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidArgumentError

ENV_TOKEN = "CFREG_UI_TOKEN"
ENV_TOKEN_FILE = "CFREG_UI_TOKEN_FILE"
DEFAULT_IDENTITY = "operator"
MIN_TOKEN_LENGTH = 16
SESSION_COOKIE = "cfreg_session"
CSRF_COOKIE = "cfreg_csrf"
CSRF_FIELD = "csrf_token"
SESSION_SECONDS = 8 * 3600
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "SESSION_COOKIE", "TokenStore", "load_tokens", "new_csrf_token"]


@dataclass(frozen=True)
class TokenStore:
    """The configured tokens: ``{identity: token}``; empty means read-only."""

    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (otherwise every write is refused)."""
        return bool(self.tokens)

    def identify(self, presented: str | None) -> str | None:
        """The identity whose token is ``presented`` (constant-time comparison), else None."""
        if not presented:
            return None
        found = None
        for name, token in self.tokens.items():
            if hmac.compare_digest(presented.encode(), token.encode()):
                found = name
        return found

    def identify_bearer(self, authorization: str | None) -> str | None:
        """The identity of an ``Authorization: Bearer <token>`` header value, else None."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        return self.identify(value.strip()) if scheme.lower() == "bearer" else None

    def session_cookie(self, identity: str, now: float | None = None) -> str:
        """A signed session value for ``identity`` valid for :data:`SESSION_SECONDS`."""
        expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
        name = base64.urlsafe_b64encode(identity.encode()).decode().rstrip("=")
        return f"{name}.{expires}.{self._sign(identity, expires)}"

    def session_identity(self, cookie: str | None, now: float | None = None) -> str | None:
        """The identity of a valid, unexpired session cookie value, else None."""
        if not cookie or cookie.count(".") != 2:
            return None
        name, expires_text, signature = cookie.split(".")
        try:
            identity = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
            expires = int(expires_text)
        except (ValueError, UnicodeDecodeError):
            return None
        if identity not in self.tokens or expires < (now if now is not None else time.time()):
            return None
        return identity if hmac.compare_digest(signature, self._sign(identity, expires)) else None

    def _sign(self, identity: str, expires: int) -> str:
        key = self.tokens[identity].encode()
        return hmac.new(key, f"session:{identity}:{expires}".encode(), hashlib.sha256).hexdigest()


def _check_token(token: str, where: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or any(c.isspace() for c in token):
        raise InvalidArgumentError(
            f"the UI token from {where} must be at least {MIN_TOKEN_LENGTH} printable characters without spaces "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


def parse_token_file(text: str, where: str) -> dict[str, str]:
    """``{identity: token}`` from a token file's text (``NAME TOKEN`` or ``TOKEN`` lines)."""
    tokens: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) == 1:
            name, token = DEFAULT_IDENTITY, parts[0]
        elif len(parts) == 2 and NAME_PATTERN.fullmatch(parts[0]):
            name, token = parts
        else:
            raise InvalidArgumentError(f"{where} line {number}: expected 'NAME TOKEN' or 'TOKEN'")
        if name in tokens:
            raise InvalidArgumentError(f"{where} line {number}: identity {name!r} appears twice")
        tokens[name] = _check_token(token, f"{where} line {number}")
    if len(set(tokens.values())) != len(tokens):
        raise InvalidArgumentError(f"{where}: two identities share a token; give each its own")
    return tokens


def load_tokens(
    token_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TokenStore:
    """The tokens from ``token_file``, else ``$CFREG_UI_TOKEN_FILE``, else ``$CFREG_UI_TOKEN``.

    Raises:
        InvalidArgumentError: an unreadable file, a malformed line, or a token shorter
            than :data:`MIN_TOKEN_LENGTH` characters.
    """
    env = os.environ if environ is None else environ
    path = token_file or env.get(ENV_TOKEN_FILE)
    if path:
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgumentError(f"cannot read the UI token file {str(path)!r}: {exc}") from exc
        return TokenStore(parse_token_file(text, str(path)))
    if env.get(ENV_TOKEN):
        return TokenStore({DEFAULT_IDENTITY: _check_token(env[ENV_TOKEN], f"${ENV_TOKEN}")})
    return TokenStore()


def new_csrf_token() -> str:
    """A fresh random CSRF token."""
    return secrets.token_urlsafe(32)
