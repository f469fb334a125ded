"""Waivers in the database: granted, listed, revoked; the ones that apply to a run."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import or_, select
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
    session: Session, model_name: str, version: int, artifact_digest: str | None
) -> list[Waiver]:
    """Unrevoked, unexpired waivers of this model that name this version or these files."""
    targets = [Waiver.version == version]
    if artifact_digest:
        targets.append(Waiver.artifact_digest == artifact_digest)
    return list(
        session.scalars(
            select(Waiver)
            .where(
                Waiver.model_name == model_name,
                Waiver.revoked_at.is_(None),
                Waiver.expires_at > utcnow(),
                or_(*targets),
            )
            .order_by(Waiver.created_at)
        )
    )


def list_waivers(session: Session, model_name: str | None = None) -> list[Waiver]:
    query = select(Waiver).order_by(Waiver.created_at.desc())
    if model_name is not None:
        query = query.where(Waiver.model_name == model_name)
    return list(session.scalars(query.limit(1000)))
