"""Bearer tokens: stored hashed, each with a role. Roles are ordered; higher includes lower."""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Settings
from service.errors import BadRequest, Forbidden, Unauthorized
from service.store.tables import ApiToken


class Role(enum.StrEnum):
    """In increasing order of power: each role may do what the ones before it may."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def has(self, role: Role) -> bool:
        return self.role.rank >= role.rank

    def require(self, role: Role) -> None:
        if not self.has(role):
            raise Forbidden(
                f"this action needs the {role} role; token '{self.name}' is {self.role}"
            )


def _printable_ascii(value: str) -> bool:
    return value.isascii() and value.isprintable()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Credential:
    """A token as the gatekeeper knows it now: who holds it and what it is bound to.

    `subject` names the credential without the secret (`admin` for the bootstrap token,
    `t<id>` for an `api_tokens` row); `binding` is a hash of the secret it is today (the
    admin token's sha256, a row's stored hash). Neither is secret-bearing on its own; a
    page session is signed over both, so rotating the admin token ends admin sessions.
    """

    principal: Principal
    subject: str
    binding: str


BOOTSTRAP_ADMIN = "bootstrap-admin"
_ROW_SUBJECT = re.compile(r"t[0-9]{1,15}")


def _admin_credential(admin_token: str) -> Credential:
    return Credential(
        principal=Principal(name=BOOTSTRAP_ADMIN, role=Role.ADMIN),
        subject="admin",
        binding=hash_token(admin_token),
    )


def _row_credential(row: ApiToken) -> Credential:
    try:
        role = Role(row.role)
    except ValueError as exc:  # a row written by hand: refuse it rather than guess
        raise Unauthorized(f"token '{row.name}' has an unknown role") from exc
    return Credential(
        principal=Principal(name=row.name, role=role),
        subject=f"t{row.id}",
        binding=row.token_hash,
    )


def resolve_token(session: Session, settings: Settings, token: str) -> Credential:
    """The live credential for a presented token; Unauthorized when unknown or revoked."""
    # HTTP headers arrive decoded as latin-1; a token is printable ASCII, and
    # hmac.compare_digest refuses non-ASCII strings (a TypeError, i.e. a 500) anyway.
    if not _printable_ascii(token):
        raise Unauthorized("the bearer token is not printable ASCII")
    if settings.admin_token and hmac.compare_digest(token, settings.admin_token):
        return _admin_credential(settings.admin_token)
    row = session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )
    if row is None:
        raise Unauthorized("unknown or revoked token")
    return _row_credential(row)


def credential_for_subject(session: Session, settings: Settings, subject: str) -> Credential:
    """The live credential a subject names now (see `Credential`); Unauthorized when the
    admin token is no longer configured, or the row is gone or revoked."""
    if subject == "admin":
        if not settings.admin_token:
            raise Unauthorized("the bootstrap admin token is no longer configured")
        return _admin_credential(settings.admin_token)
    if _ROW_SUBJECT.fullmatch(subject) is None:
        raise Unauthorized("unknown token")
    row = session.get(ApiToken, int(subject[1:]))
    if row is None or row.revoked_at is not None:
        raise Unauthorized("unknown or revoked token")
    return _row_credential(row)


def authenticate(session: Session, settings: Settings, authorization: str | None) -> Principal:
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    token = authorization.removeprefix("Bearer ").strip()
    return resolve_token(session, settings, token).principal


def create_token(session: Session, *, name: str, role: str) -> str:
    try:
        known = Role(role)
    except ValueError as exc:
        raise BadRequest(f"role must be one of {', '.join(Role)}") from exc
    token = "gk_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, role=known.value, token_hash=hash_token(token)))
    return token
