"""Bearer tokens: stored hashed, each with a role. Roles are ordered; higher includes lower."""

from __future__ import annotations

import enum
import hashlib
import hmac
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


def authenticate(session: Session, settings: Settings, authorization: str | None) -> Principal:
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    token = authorization.removeprefix("Bearer ").strip()
    # HTTP headers arrive decoded as latin-1; a token is printable ASCII, and
    # hmac.compare_digest refuses non-ASCII strings (a TypeError, i.e. a 500) anyway.
    if not _printable_ascii(token):
        raise Unauthorized("the bearer token is not printable ASCII")
    if settings.admin_token and hmac.compare_digest(token, settings.admin_token):
        return Principal(name="bootstrap-admin", role=Role.ADMIN)
    row = session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )
    if row is None:
        raise Unauthorized("unknown or revoked token")
    try:
        role = Role(row.role)
    except ValueError as exc:  # a row written by hand: refuse it rather than guess
        raise Unauthorized(f"token '{row.name}' has an unknown role") from exc
    return Principal(name=row.name, role=role)


def create_token(session: Session, *, name: str, role: str) -> str:
    try:
        known = Role(role)
    except ValueError as exc:
        raise BadRequest(f"role must be one of {', '.join(Role)}") from exc
    token = "gk_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, role=known.value, token_hash=hash_token(token)))
    return token
