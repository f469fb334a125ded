"""API schemas, one family per entity."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict

from gates.base import Status
from service.store.tables import GateRun, RunStatus, Trigger


class GateResultRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    gate: str
    status: Status
    message: str
    findings: list[Any]
    metrics: dict[str, Any]
    thresholds: dict[str, Any]
    evidence: dict[str, Any]
    # admins only: what a sandboxed model wrote (stderr tail, exception); None for others
    diagnostics: dict[str, Any] | None = None
    duration_s: float


class RunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    model_name: str
    model_version: int
    trigger: Trigger
    status: RunStatus
    attempt: int
    max_attempts: int
    policy_digest: str
    artifact_digest: str | None
    datasets: list[Any] | None
    sandbox: str | None
    decision: dict[str, Any] | None
    error_message: str | None
    requested_by: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    published_at: dt.datetime | None
    report_url: str
    gates: list[GateResultRead]

    @classmethod
    def from_row(cls, run: GateRun, report_url: str, *, admin: bool = False) -> RunRead:
        gates = [GateResultRead.model_validate(r) for r in run.results]
        if not admin:  # what a model wrote is never shown to anyone else
            gates = [g.model_copy(update={"diagnostics": None}) for g in gates]
        return cls.model_validate({**_columns(run), "report_url": report_url, "gates": gates})


def _columns(run: GateRun) -> dict[str, Any]:
    return {c.key: getattr(run, c.key) for c in GateRun.__table__.columns}


class RunList(BaseModel):
    data: list[RunRead]
    count: int


class WebhookAccepted(BaseModel):
    delivery_id: str
    outcome: str
    run_id: str | None = None
