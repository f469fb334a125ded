"""Runs: manual re-run (operator), run detail and per-version list (viewer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from sqlalchemy import func, select

from service.api.deps import CurrentPrincipal, RegistryDep, SessionDep, SettingsDep
from service.api.schemas import RunList, RunRead
from service.errors import NotFound
from service.runs.intake import request_run
from service.runs.promotion import report_url
from service.store import audit
from service.store.auth import Role
from service.store.tables import GateRun, Trigger

router = APIRouter(prefix="/api/v1", tags=["runs"])

ModelName = Annotated[str, Path(min_length=1, max_length=256)]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post(
    "/models/{name}/versions/{version}/runs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunRead,
)
def create_run(
    name: ModelName,
    version: VersionNumber,
    session: SessionDep,
    settings: SettingsDep,
    registry: RegistryDep,
    principal: CurrentPrincipal,
) -> RunRead:
    """Queue a new run for a version. A manual re-run always makes a new run."""
    principal.require(Role.OPERATOR)
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


@router.get("/runs/{run_id}", response_model=RunRead)
def get_run(
    run_id: Annotated[str, Path(max_length=36)],
    session: SessionDep,
    settings: SettingsDep,
    principal: CurrentPrincipal,
) -> RunRead:
    principal.require(Role.VIEWER)
    run = session.get(GateRun, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    return RunRead.from_row(run, report_url(settings, run.id), admin=principal.has(Role.ADMIN))


@router.get("/models/{name}/versions/{version}/runs", response_model=RunList)
def list_runs(
    name: ModelName,
    version: VersionNumber,
    session: SessionDep,
    settings: SettingsDep,
    principal: CurrentPrincipal,
) -> RunList:
    principal.require(Role.VIEWER)
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
