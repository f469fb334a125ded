"""Waivers: time-boxed exceptions (approver to grant or revoke, viewer to list).

A waiver names one model, the files it covers (a version: bound to the artifact digest of
that version's latest recorded run, the files the approver saw; or an artifact digest), and
one gate or one rule id; it has a reason and an expiry (ISO 8601 with a time zone, in the
future, at most GATEKEEPER_WAIVER_MAX_DAYS away). It takes effect on the version's next run (a
re-run); when it ends (expiry or revocation) the versions it let through are decided again
without it (service/runs/waiver_end.py). Every grant and revocation is an audit event with the
actor.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api.deps import (
    ApproverPrincipal,
    ReadSession,
    RegistryDep,
    SettingsDep,
    ViewerPrincipal,
    WriteSession,
)
from service.api.schemas import error_responses
from service.config import Settings
from service.errors import BadRequest, NotFound
from service.policy import GATE_ORDER, policy_for
from service.runs.guard import latest_runs
from service.runs.waiver_checks import WaiverRequest, check_waiver
from service.runs.waiver_end import end_waiver
from service.store import audit
from service.store.db import transaction
from service.store.tables import GateRun, Waiver, utcnow
from service.store.waivers import WaiverState, list_waivers, state_of

router = APIRouter(prefix="/api/v1", tags=["waivers"], responses=error_responses(401, 403, 503))
log = logging.getLogger("gatekeeper.waivers")

GATES = GATE_ORDER  # what a gate waiver may name: the gates a run lists
_RULE_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class WaiverCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    artifact_digest: str | None = None
    gate: str | None = None
    rule_id: str | None = None
    reason: str = Field(min_length=3, max_length=2000)
    expires_at: dt.datetime

    @field_validator("artifact_digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not _DIGEST.match(value):
            raise ValueError("artifact_digest is the run's sha256 manifest digest (64 hex)")
        return value

    @field_validator("gate")
    @classmethod
    def _gate(cls, value: str | None) -> str | None:
        if value is not None and value not in GATES:
            raise ValueError(f"gate must be one of {', '.join(GATES)}")
        return value

    @field_validator("rule_id")
    @classmethod
    def _rule(cls, value: str | None) -> str | None:
        if value is not None and not _RULE_ID.match(value):
            raise ValueError("rule_id looks like SEC-PICKLE-001 or DATA-PII-INPUT")
        return value

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("expires_at needs a time zone (e.g. 2026-12-24T00:00:00Z)")
        return value.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _one_each(self) -> WaiverCreate:
        if self.version is None and self.artifact_digest is None:
            raise ValueError("give a version or an artifact_digest (or both)")
        if (self.gate is None) == (self.rule_id is None):
            raise ValueError("give exactly one of gate, rule_id")
        return self


class WaiverRead(BaseModel):
    id: str
    model: str
    version: int | None
    artifact_digest: str | None
    gate: str | None
    rule_id: str | None
    reason: str
    expires_at: dt.datetime
    created_by: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    revoked_by: str | None
    state: WaiverState

    @classmethod
    def from_row(cls, row: Waiver) -> WaiverRead:
        return cls(
            id=row.id, model=row.model_name, version=row.version,
            artifact_digest=row.artifact_digest, gate=row.gate, rule_id=row.rule_id,
            reason=row.reason, expires_at=row.expires_at, created_by=row.created_by,
            created_at=row.created_at, revoked_at=row.revoked_at, revoked_by=row.revoked_by,
            state=state_of(row),
        )  # fmt: skip


class WaiverList(BaseModel):
    data: list[WaiverRead]


@router.post(
    "/waivers",
    status_code=status.HTTP_201_CREATED,
    response_model=WaiverRead,
    responses=error_responses(400),
)
def create_waiver(
    principal: ApproverPrincipal,
    body: WaiverCreate,
    session: WriteSession,
    settings: SettingsDep,
    registry: RegistryDep,
) -> WaiverRead:
    now = utcnow()
    if body.expires_at <= now:
        raise BadRequest("expires_at is in the past: a waiver must expire in the future")
    longest = now + dt.timedelta(days=settings.waiver_max_days)
    if body.expires_at > longest:
        raise BadRequest(
            f"expires_at is more than {settings.waiver_max_days:g} days away (the operator's "
            "GATEKEEPER_WAIVER_MAX_DAYS); ask for a shorter waiver"
        )
    model_exists = registry.has_model(body.model)  # asked before the database is touched
    check_waiver(
        WaiverRequest(body.model, body.version, body.gate, body.rule_id),
        model_exists=model_exists,
        policy=policy_for(body.model, settings.policy_path),
        latest_run=_judged_run(session, body),
    )
    digest = _bound_digest(session, body)
    row = Waiver(
        model_name=body.model, version=body.version, artifact_digest=digest,
        gate=body.gate, rule_id=body.rule_id, reason=body.reason, expires_at=body.expires_at,
        created_by=principal.name, created_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    created = WaiverRead.from_row(row)
    audit.record(
        session,
        actor=principal.name,
        action="waiver.created",
        target=_target(row),
        details=created.model_dump(mode="json", exclude={"state"}),
    )
    return created  # committed before the answer is sent (deps.WriteSession)


@router.get("/waivers", response_model=WaiverList)
def get_waivers(
    _viewer: ViewerPrincipal,
    session: ReadSession,
    model: Annotated[str | None, Query(max_length=256)] = None,
) -> WaiverList:
    return WaiverList(data=[WaiverRead.from_row(w) for w in list_waivers(session, model)])


def _judged_run(session: Session, body: WaiverCreate) -> GateRun | None:
    """The run whose findings the waiver would cover: the version's latest, or the latest run
    of the model that judged the named files."""
    if body.version is not None:
        return latest_runs(session, body.model).get(body.version)
    return session.scalars(
        select(GateRun)
        .where(
            GateRun.model_name == body.model,
            GateRun.artifact_digest == body.artifact_digest,
            GateRun.finished_at.is_not(None),
        )
        .order_by(GateRun.finished_at.desc())
        .limit(1)
    ).first()


def _bound_digest(session: Session, body: WaiverCreate) -> str | None:
    """The files the waiver covers: for a version, those its latest recorded run judged (what
    the approver saw); a digest given beside it must be that one."""
    if body.version is None:
        return body.artifact_digest
    run = latest_runs(session, body.model).get(body.version)
    if run is None or not run.artifact_digest:
        raise BadRequest(
            f"{body.model} v{body.version} has no recorded run that judged its files: a waiver "
            "is bound to the files it covers; run the version first"
        )
    if body.artifact_digest is not None and body.artifact_digest != run.artifact_digest:
        raise BadRequest(
            f"artifact_digest {body.artifact_digest[:16]}... is not the digest of the files "
            f"v{body.version}'s latest run judged ({run.artifact_digest[:16]}...)"
        )
    return run.artifact_digest


@router.delete("/waivers/{waiver_id}", response_model=WaiverRead, responses=error_responses(404))
def revoke_waiver(
    principal: ApproverPrincipal,
    waiver_id: Annotated[str, Path(max_length=36)],
    settings: SettingsDep,
    registry: RegistryDep,
) -> WaiverRead:
    """Revoke (committed), then decide again what the waiver let through: `end_waiver` opens
    transactions of its own, so this route holds none of the request's."""
    answer = _revoke(settings, waiver_id, actor=principal.name)
    # what it let through is decided again now (the poller retries if this fails)
    try:
        end_waiver(settings, registry, waiver_id)
    except Exception:
        log.exception(
            "waiver=%s revoked; its versions will be decided again by the poller", waiver_id
        )
    return answer


def _revoke(settings: Settings, waiver_id: str, *, actor: str) -> WaiverRead:
    with transaction(settings.resolved_database_url) as session:
        row = session.get(Waiver, waiver_id)
        if row is None:
            raise NotFound(f"no waiver {waiver_id}")
        if row.revoked_at is None:
            was = state_of(row)
            row.revoked_at, row.revoked_by = utcnow(), actor
            audit.record(
                session,
                actor=actor,
                action="waiver.revoked",
                target=_target(row),
                details={"waiver_id": row.id, "was": was.value},
            )
        return WaiverRead.from_row(row)


def _target(row: Waiver) -> str:
    return f"{row.model_name}/{row.version if row.version is not None else row.artifact_digest}"
