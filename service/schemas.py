"""API schemas, one family per entity."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel

from service.models import GateRun


class GateResultRead(BaseModel):
    gate: str
    status: str
    message: str
    findings: list[Any]
    metrics: dict[str, Any]
    thresholds: dict[str, Any]
    evidence: dict[str, Any]
    # admins only: what a sandboxed model wrote (stderr tail, exception); None for others
    diagnostics: dict[str, Any] | None = None
    duration_s: float


class RunRead(BaseModel):
    id: str
    model_name: str
    model_version: int
    trigger: str
    status: str
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
        return cls(
            id=run.id,
            model_name=run.model_name,
            model_version=run.model_version,
            trigger=run.trigger,
            status=run.status,
            attempt=run.attempt,
            max_attempts=run.max_attempts,
            policy_digest=run.policy_digest,
            artifact_digest=run.artifact_digest,
            datasets=run.datasets,
            sandbox=run.sandbox,
            decision=run.decision,
            error_message=run.error_message,
            requested_by=run.requested_by,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            published_at=run.published_at,
            report_url=report_url,
            gates=[
                GateResultRead(
                    gate=r.gate,
                    status=r.status,
                    message=r.message,
                    findings=r.findings,
                    metrics=r.metrics,
                    thresholds=r.thresholds,
                    evidence=r.evidence,
                    diagnostics=r.diagnostics if admin else None,
                    duration_s=r.duration_s,
                )
                for r in run.results
            ],
        )


class RunList(BaseModel):
    data: list[RunRead]
    count: int


class WebhookAccepted(BaseModel):
    delivery_id: str
    outcome: str
    run_id: str | None = None
