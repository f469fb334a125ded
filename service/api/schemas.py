"""API schemas, one family per entity."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

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


class ErrorRead(BaseModel):
    """Every error the gatekeeper answers (service/app.py): what went wrong, in words."""

    error: str  # Unauthorized, Forbidden, NotFound, DatabaseUnavailable, ...
    detail: str


class ValidationErrorItem(BaseModel):
    """One thing wrong with a request, as FastAPI reports it (the input value only when it
    is a short scalar: a body is never echoed back whole)."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationErrorRead(BaseModel):
    """422: every error FastAPI found in the request, as a JSON list."""

    error: Literal["ValidationError"]
    detail: list[ValidationErrorItem]


_ERROR_MEANINGS = {
    400: "The request is well formed but cannot be done (the detail says why)",
    401: "No bearer token, or one that is unknown or revoked",
    403: "The token's role is below the one this route needs",
    404: "No such thing (the detail names it)",
    413: "The body is over the size limit",
    503: "The gatekeeper's database or MLflow is unavailable: retry after Retry-After",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the errors a route may answer, with their `{error, detail}`."""
    return {code: {"model": ErrorRead, "description": _ERROR_MEANINGS[code]} for code in codes}
