"""Lineage (viewer) and quarantine incidents (approver to open and close, viewer to list)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from service.api.deps import (
    ApproverPrincipal,
    ReadSession,
    RegistryDep,
    SettingsDep,
    ViewerPrincipal,
)
from service.api.schemas import error_responses
from service.config import Settings
from service.errors import NotFound
from service.runs.quarantine import close_incident, open_incident
from service.store.db import read_transaction
from service.store.lineage import LineageEntry, versions_using
from service.store.tables import Incident

router = APIRouter(
    prefix="/api/v1", tags=["lineage", "incidents"], responses=error_responses(401, 403, 503)
)


class LineageList(BaseModel):
    dataset: str
    data: list[LineageEntry]


@router.get("/lineage", response_model=LineageList)
def lineage(
    _viewer: ViewerPrincipal,
    session: ReadSession,
    dataset: Annotated[str, Query(min_length=1, max_length=1024)],
) -> LineageList:
    """The versions trained or evaluated on a dataset (its source, sha256 or MLflow digest)."""
    entries = versions_using(session, dataset)
    return LineageList(dataset=dataset, data=entries)


class IncidentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(default=None, min_length=1, max_length=1024)
    model: str | None = Field(default=None, min_length=1, max_length=256)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    reason: str = Field(min_length=3, max_length=2000)


class IncidentRead(BaseModel):
    id: str
    dataset: str | None
    model: str | None
    version: int | None
    reason: str
    affected: list[dict[str, Any]]
    dataset_sha256s: list[str]
    opened_by: str
    opened_at: dt.datetime
    closed_by: str | None
    closed_at: dt.datetime | None
    open: bool

    @classmethod
    def from_row(cls, row: Incident) -> IncidentRead:
        return cls(
            id=row.id, dataset=row.dataset, model=row.model_name, version=row.version,
            reason=row.reason, affected=list(row.affected or []),
            dataset_sha256s=[str(h) for h in row.dataset_sha256s or []], opened_by=row.opened_by,
            opened_at=row.opened_at, closed_by=row.closed_by, closed_at=row.closed_at,
            open=row.closed_at is None,
        )  # fmt: skip


class IncidentList(BaseModel):
    data: list[IncidentRead]


# The quarantine code opens its own transactions (around MLflow calls, under the guard's
# locks): these two routes hold no session of the request's (service/api/deps.py).
@router.post(
    "/incidents",
    status_code=status.HTTP_201_CREATED,
    response_model=IncidentRead,
    responses=error_responses(400),
)
def create_incident(
    principal: ApproverPrincipal,
    body: IncidentCreate,
    settings: SettingsDep,
    registry: RegistryDep,
) -> IncidentRead:
    """Quarantine every version trained or evaluated on `dataset`, or one version."""
    incident_id = open_incident(
        settings, registry, actor=principal.name, reason=body.reason,
        dataset=body.dataset, model=body.model, version=body.version,
    )  # fmt: skip
    return _read(settings, incident_id)


@router.post(
    "/incidents/{incident_id}/close", response_model=IncidentRead, responses=error_responses(404)
)
def close(
    principal: ApproverPrincipal,
    incident_id: Annotated[str, Path(max_length=36)],
    settings: SettingsDep,
    registry: RegistryDep,
) -> IncidentRead:
    close_incident(settings, registry, incident_id, actor=principal.name)
    return _read(settings, incident_id)


@router.get("/incidents", response_model=IncidentList)
def list_incidents(_viewer: ViewerPrincipal, session: ReadSession) -> IncidentList:
    rows = session.scalars(select(Incident).order_by(Incident.opened_at.desc()).limit(500))
    return IncidentList(data=[IncidentRead.from_row(r) for r in rows])


def _read(settings: Settings, incident_id: str) -> IncidentRead:
    """Read back what the quarantine code committed."""
    with read_transaction(settings.resolved_database_url) as session:
        row = session.get(Incident, incident_id)
        if row is None:
            raise NotFound(f"no incident {incident_id}")
        return IncidentRead.from_row(row)
