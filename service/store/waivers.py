"""Waivers in the database: granted, listed, revoked; the ones that apply to a run."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from service.store.tables import Waiver, utcnow


class WaiverState(enum.StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


def state_of(waiver: Waiver, now: dt.datetime | None = None) -> WaiverState:
    if waiver.revoked_at is not None:
        return WaiverState.REVOKED
    if waiver.expires_at <= (now or utcnow()):
        return WaiverState.EXPIRED
    return WaiverState.ACTIVE


def waivers_for_run(
    session: Session,
    model_name: str,
    version: int,
    artifact_digest: str | None,
    now: dt.datetime | None = None,
) -> list[Waiver]:
    """Unrevoked, unexpired waivers of this model for these files: a waiver names the
    artifact digest the approver saw, so it never follows a version whose files changed.
    (A waiver made before waivers were bound to files names only a version.)"""
    same_files = Waiver.artifact_digest == artifact_digest if artifact_digest else None
    targets = [and_(Waiver.version == version, Waiver.artifact_digest.is_(None))]
    if same_files is not None:
        targets.append(and_(Waiver.version == version, same_files))
        targets.append(and_(Waiver.version.is_(None), same_files))
    return list(
        session.scalars(
            select(Waiver)
            .where(
                Waiver.model_name == model_name,
                Waiver.revoked_at.is_(None),
                Waiver.expires_at > (now or utcnow()),
                or_(*targets),
            )
            .order_by(Waiver.created_at)
        )
    )


def ended_unhandled(session: Session, limit: int = 100) -> list[Waiver]:
    """Waivers that expired or were revoked and whose versions were not yet decided again."""
    now = utcnow()
    return list(
        session.scalars(
            select(Waiver)
            .where(
                Waiver.ended_handled_at.is_(None),
                or_(Waiver.revoked_at.is_not(None), Waiver.expires_at <= now),
            )
            .order_by(Waiver.expires_at)
            .limit(limit)
        )
    )


def list_waivers(session: Session, model_name: str | None = None) -> list[Waiver]:
    query = select(Waiver).order_by(Waiver.created_at.desc())
    if model_name is not None:
        query = query.where(Waiver.model_name == model_name)
    return list(session.scalars(query.limit(1000)))
