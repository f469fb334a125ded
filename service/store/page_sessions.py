"""Signed-in report pages: a stateless session cookie, so no table.

A person signs in on the sign-in form with an API token (viewer or above); the gatekeeper
answers with a cookie that names the credential and never holds the token:

    v1.<subject>.<issued>.<expires>.<mac>

`subject` is `admin` (the bootstrap token) or `t<id>` (an `api_tokens` row); `issued` and
`expires` are Unix seconds, 12 hours apart; `mac` is HMAC-SHA256 over those fields *and the
credential's binding* (the admin token's sha256, or the row's stored token hash), keyed by a
random secret of this installation. The binding never leaves the server, so:

- every page request looks the subject up again (`credential_for_subject`): a revoked or
  deleted token ends its sessions at once, and a row's role is read fresh;
- rotating `GATEKEEPER_ADMIN_TOKEN` changes the admin binding, which ends every admin session;
- deleting the key file ends every session (the next sign-in makes a new key).

Why not a sessions table: stateless needs no migration, survives restarts, and is shared by
replicas through the data dir (the same volume the signing key lives in, see
`service/integrity/keys.py`). What it cannot do is end one session alone before it expires;
revoking the token (or the key file) is that lever, and 12 hours bounds the rest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from service.config import Settings
from service.errors import ConfigError, Unauthorized
from service.store.auth import Credential, Principal, credential_for_subject, resolve_token

LIFETIME_S = 12 * 3600
# a clock of another replica a little ahead is fine; a cookie issued far in the future is not
_CLOCK_SKEW_S = 300
_VERSION = "v1"
_KEY_BYTES = 32
_COOKIE = re.compile(r"v1\.(admin|t[0-9]{1,15})\.([0-9]{1,12})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class CookieSpec:
    """How the session cookie is set: the name and the flags, one place for set and clear."""

    name: str
    secure: bool
    max_age: int = LIFETIME_S
    path: str = "/"
    # Lax, not Strict: people arrive from a link on another site (MLflow's UI shows the
    # `gatekeeper.report_url` tag), a top-level GET that Strict would send without the cookie.
    # The cookie authenticates read-only GET pages only (never /api/v1), so Lax gives
    # cross-site requests nothing to change.
    samesite: Literal["lax", "strict"] = "lax"
    httponly: bool = True


def cookie_spec(settings: Settings) -> CookieSpec:
    """`Secure` when the gatekeeper is served over https, and then the `__Host-` prefix,
    which browsers only accept for a Secure, Path=/ cookie set by the host itself."""
    secure = urlsplit(settings.public_url).scheme == "https"
    name = "__Host-gatekeeper_session" if secure else "gatekeeper_session"
    return CookieSpec(name=name, secure=secure)


def sign_in(
    session: Session, settings: Settings, token: str, *, now: float | None = None
) -> tuple[Principal, str]:
    """The principal a token signs in as and the cookie value for it; Unauthorized for a
    token that is unknown, revoked or below viewer (every role is at least viewer)."""
    credential = resolve_token(session, settings, token)
    issued = int(now if now is not None else time.time())
    expires = issued + LIFETIME_S
    mac = _mac(settings, credential, issued, expires)
    return credential.principal, f"{_VERSION}.{credential.subject}.{issued}.{expires}.{mac}"


def principal_from_cookie(
    session: Session, settings: Settings, value: str, *, now: float | None = None
) -> Principal:
    """Who a session cookie signs in, checked against the live token; Unauthorized if the
    cookie is malformed, forged, expired, or its token was revoked or rotated since."""
    match = _COOKIE.fullmatch(value)
    if match is None:
        raise Unauthorized("malformed session cookie")
    subject, issued, expires, mac = match[1], int(match[2]), int(match[3]), match[4]
    current = now if now is not None else time.time()
    if expires - issued != LIFETIME_S or issued > current + _CLOCK_SKEW_S or current >= expires:
        raise Unauthorized("the session has expired")
    credential = credential_for_subject(session, settings, subject)
    if not hmac.compare_digest(mac, _mac(settings, credential, issued, expires)):
        raise Unauthorized("the session is not valid for this token")
    return credential.principal


def _mac(settings: Settings, credential: Credential, issued: int, expires: int) -> str:
    message = f"{_VERSION}|{credential.subject}|{issued}|{expires}|{credential.binding}"
    digest = hmac.new(session_key(settings.data_dir), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def key_path(data_dir: Path) -> Path:
    return data_dir / "secrets" / "page-session.key"


def session_key(data_dir: Path) -> bytes:
    """The installation's session key: 32 random bytes in the data dir, made 0600 on first
    use. Read on every use (a few bytes, in the page cache) so deleting it takes effect
    without a restart. Written to a temporary file and linked into place, so a replica
    racing this one reads a whole key or makes none."""
    path = key_path(data_dir)
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(_KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:  # another process of this installation made it first
            pass
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"the page session key {path} cannot be read: {exc}") from exc
    if len(key) < _KEY_BYTES:
        raise ConfigError(
            f"the page session key {path} is damaged (shorter than {_KEY_BYTES} bytes); "
            "delete it to make a new one (every signed-in page session ends)"
        )
    return key
