"""Runs: manual re-run (operator), run detail and per-version list (viewer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from sqlalchemy import func, select

from service.api.deps import (
    OperatorPrincipal,
    ReadSession,
    RegistryDep,
    SettingsDep,
    ViewerPrincipal,
    WriteSession,
)
from service.api.schemas import RunList, RunRead, error_responses
from service.errors import NotFound
from service.runs.intake import request_run
from service.runs.version_tags import report_url
from service.store import audit
from service.store.auth import Role
from service.store.tables import GateRun, Trigger

router = APIRouter(prefix="/api/v1", tags=["runs"], responses=error_responses(401, 403, 503))

ModelName = Annotated[str, Path(min_length=1, max_length=256)]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post(
    "/models/{name}/versions/{version}/runs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunRead,
    responses=error_responses(404),
)
def create_run(
    principal: OperatorPrincipal,
    name: ModelName,
    version: VersionNumber,
    session: WriteSession,
    settings: SettingsDep,
    registry: RegistryDep,
) -> RunRead:
    """Queue a new run for a version. A manual re-run always makes a new run."""
    registry.get_version(name, version)  # 404 now, not an error run later, for a typo
    run_id, _ = request_run(
        session,
        settings,
        model_name=name,
        version=version,
        trigger=Trigger.MANUAL,
        requested_by=principal.name,
    )
    audit.record(
        session,
        actor=principal.name,
        action="run.requested",
        target=f"{name}/{version}",
        details={"run_id": run_id},
    )
    session.flush()
    run = session.get(GateRun, run_id)
    assert run is not None
    return RunRead.from_row(run, report_url(settings, run_id))


@router.get("/runs/{run_id}", response_model=RunRead, responses=error_responses(404))
def get_run(
    principal: ViewerPrincipal,
    run_id: Annotated[str, Path(max_length=36)],
    session: ReadSession,
    settings: SettingsDep,
) -> RunRead:
    run = session.get(GateRun, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    return RunRead.from_row(run, report_url(settings, run.id), admin=principal.has(Role.ADMIN))


@router.get("/models/{name}/versions/{version}/runs", response_model=RunList)
def list_runs(
    principal: ViewerPrincipal,
    name: ModelName,
    version: VersionNumber,
    session: ReadSession,
    settings: SettingsDep,
) -> RunList:
    where = (GateRun.model_name == name, GateRun.model_version == version)
    runs = session.scalars(
        select(GateRun).where(*where).order_by(GateRun.created_at.desc()).limit(100)
    ).all()
    count = session.scalar(select(func.count()).select_from(GateRun).where(*where)) or 0
    return RunList(
        data=[
            RunRead.from_row(r, report_url(settings, r.id), admin=principal.has(Role.ADMIN))
            for r in runs
        ],
        count=count,
    )
