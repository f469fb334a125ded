"""The runs table as a durable queue: enqueue, claim, lease, heartbeat, finish.

The only module that issues queue SQL. On PostgreSQL a claim is `SELECT ... FOR UPDATE SKIP
LOCKED`, so many workers on many machines never take the same run; on SQLite every transaction
is BEGIN IMMEDIATE (service/store/db.py), which serialises claims. A run whose lease expired (its
worker died) is claimed again; after `max_attempts` claims it is given up as `error`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, aliased

from gates.base import GateResult
from service.decision.verdict import Decision
from service.errors import LeaseLost
from service.store.db import insert_stmt
from service.store.tables import (
    FINISHED_STATUSES,
    PROMOTABLE_STATUSES,
    GateResultRow,
    GateRun,
    RunStatus,
    new_id,
    utcnow,
)


@dataclass(frozen=True)
class ClaimedRun:
    id: str
    model_name: str
    model_version: int
    attempt: int
    max_attempts: int
    policy_digest: str
    trigger: str


def automatic_dedup_key(model_name: str, version: int, policy_digest: str) -> str:
    raw = f"{model_name}\x00{version}\x00{policy_digest}"
    return hashlib.sha256(raw.encode()).hexdigest()


def enqueue_run(
    session: Session,
    *,
    model_name: str,
    version: int,
    trigger: str,
    policy_digest: str,
    max_attempts: int,
    automatic: bool,
    requested_by: str | None = None,
) -> tuple[str, bool]:
    """Insert a queued run; returns (run id, created). Automatic duplicates collapse."""
    run_id = new_id()
    now = utcnow()
    values: dict[str, Any] = {
        "id": run_id,
        "model_name": model_name,
        "model_version": version,
        "trigger": trigger,
        "status": RunStatus.QUEUED,
        "dedup_key": automatic_dedup_key(model_name, version, policy_digest) if automatic else None,
        "attempt": 0,
        "max_attempts": max_attempts,
        "policy_digest": policy_digest,
        "requested_by": requested_by,
        "created_at": now,
        "available_at": now,
    }
    if not automatic:
        session.execute(insert_stmt(session, GateRun).values(**values))
        return run_id, True
    # RETURNING tells us whether our row went in; rowcount is unreliable for ON CONFLICT.
    stmt = (
        insert_stmt(session, GateRun)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(GateRun.id)
    )
    if session.scalar(stmt) == run_id:
        return run_id, True
    existing = session.scalar(select(GateRun.id).where(GateRun.dedup_key == values["dedup_key"]))
    assert existing is not None  # the conflict that stopped the insert is this row
    return existing, False


def claim_next_run(
    session: Session, *, worker_id: str, lease_s: float, now: dt.datetime | None = None
) -> ClaimedRun | None:
    """Take the next claimable run (queued and due, or running with an expired lease).

    Fair across models: the model served longest ago (or never) goes first, then the oldest
    run. A flood of versions of one model therefore delays another model's run by at most
    the one run already in hand, instead of by the whole flood.
    """
    now = now or utcnow()
    served = aliased(GateRun)
    last_served = (
        select(func.max(served.started_at))
        .where(served.model_name == GateRun.model_name)
        .correlate(GateRun)
        .scalar_subquery()
    )
    while True:
        stmt = (
            select(GateRun)
            .where(
                or_(
                    (GateRun.status == RunStatus.QUEUED) & (GateRun.available_at <= now),
                    (GateRun.status == RunStatus.RUNNING) & (GateRun.lease_expires_at < now),
                )
            )
            .order_by(last_served.asc().nulls_first(), GateRun.created_at, GateRun.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        run = session.scalars(stmt).first()
        if run is None:
            return None
        if run.attempt >= run.max_attempts:
            run.status = RunStatus.ERROR
            run.error_message = (
                f"gave up after {run.attempt} attempt(s); last error: "
                f"{run.error_message or 'worker lost its lease (killed or stalled)'}"
            )
            run.finished_at = now
            run.lease_owner = None
            run.lease_expires_at = None
            session.flush()
            continue
        run.status = RunStatus.RUNNING
        run.attempt += 1
        run.lease_owner = worker_id
        run.lease_expires_at = now + dt.timedelta(seconds=lease_s)
        run.started_at = run.started_at or now
        session.flush()
        return ClaimedRun(
            id=run.id,
            model_name=run.model_name,
            model_version=run.model_version,
            attempt=run.attempt,
            max_attempts=run.max_attempts,
            policy_digest=run.policy_digest,
            trigger=run.trigger,
        )


def _rowcount(result: Any) -> int:
    """Rows an UPDATE matched (a CursorResult's; `Session.execute` is typed as plain Result)."""
    return int(result.rowcount)


def heartbeat(session: Session, *, run_id: str, worker_id: str, lease_s: float) -> bool:
    """Extend our lease; False means the run is no longer ours."""
    now = utcnow()
    result = session.execute(
        update(GateRun)
        .where(
            GateRun.id == run_id,
            GateRun.lease_owner == worker_id,
            GateRun.status == RunStatus.RUNNING,
        )
        .values(lease_expires_at=now + dt.timedelta(seconds=lease_s))
    )
    return _rowcount(result) == 1


def _owned_run(session: Session, run_id: str, worker_id: str) -> GateRun:
    run = session.scalars(select(GateRun).where(GateRun.id == run_id).with_for_update()).one()
    if run.status != RunStatus.RUNNING or run.lease_owner != worker_id:
        raise LeaseLost(f"run {run_id} is no longer leased to {worker_id}")
    return run


@dataclass(frozen=True)
class TransientHistory:
    failures: int
    for_s: float  # since the first transient failure (0 when there was none)


def transient_history(session: Session, *, run_id: str, worker_id: str) -> TransientHistory:
    run = _owned_run(session, run_id, worker_id)
    since = run.transient_since
    for_s = (utcnow() - since).total_seconds() if since is not None else 0.0
    return TransientHistory(run.transient_failures or 0, for_s)


def retry_later(
    session: Session,
    *,
    run_id: str,
    worker_id: str,
    delay_s: float,
    message: str,
    transient: bool = False,
) -> None:
    """Back to the queue after `delay_s`. A transient failure (a dependency was down) gives
    back the attempt its claim took: attempts count failures of the run itself."""
    run = _owned_run(session, run_id, worker_id)
    run.status = RunStatus.QUEUED
    run.lease_owner = None
    run.lease_expires_at = None
    run.available_at = utcnow() + dt.timedelta(seconds=delay_s)
    run.error_message = message
    if transient:
        run.attempt = max(0, run.attempt - 1)
        run.transient_failures = (run.transient_failures or 0) + 1
        run.transient_since = run.transient_since or utcnow()


def requeue_transient_errors(session: Session, *, limit: int = 100) -> list[str]:
    """Runs that ended `error` only because a dependency stayed down: queued again (same run,
    a new attempt) once it is back, so no version needs a person after an outage."""
    runs = session.scalars(
        select(GateRun)
        .where(GateRun.status == RunStatus.ERROR, GateRun.error_kind == "transient")
        .order_by(GateRun.finished_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for run in runs:
        run.status = RunStatus.QUEUED
        run.available_at = utcnow()
        run.error_kind = None
        run.transient_since = None
        run.transient_failures = 0
        run.finished_at = None
        run.published_at = None
    return [r.id for r in runs]


def release(session: Session, *, run_id: str, worker_id: str) -> None:
    """Give a run back untouched (worker shutting down): it does not count as an attempt."""
    run = _owned_run(session, run_id, worker_id)
    run.status = RunStatus.QUEUED
    run.attempt = max(0, run.attempt - 1)
    run.lease_owner = None
    run.lease_expires_at = None


def finish_run(
    session: Session,
    *,
    run_id: str,
    worker_id: str,
    decision: Decision,
    results: Sequence[GateResult],
    artifact_digest: str | None,
    artifact_manifest: list[Any] | None,
    error_message: str | None = None,
    datasets: list[Any] | None = None,
    sandbox: str | None = None,
    error_kind: str | None = None,
) -> None:
    """Results, decision and final status in the caller's one transaction (fenced by lease)."""
    run = _owned_run(session, run_id, worker_id)
    now = utcnow()
    for result in results:
        stored = result.to_dict()  # the one place gate results become JSON
        session.add(
            GateResultRow(
                run_id=run_id,
                gate=result.gate,
                status=result.status.value,
                message=result.message,
                metrics=stored["metrics"],
                thresholds=stored["thresholds"],
                findings=stored["findings"],
                evidence=stored["evidence"],
                diagnostics=dict(result.diagnostics) if result.diagnostics is not None else None,
                report_html=result.report_html,
                duration_s=stored["duration_s"],
                created_at=now,
            )
        )
    run.status = decision.status.value
    run.decision = decision.to_dict()
    run.artifact_digest = artifact_digest
    run.artifact_manifest = artifact_manifest
    run.datasets = datasets
    run.sandbox = sandbox
    run.error_message = error_message
    run.error_kind = error_kind
    run.finished_at = now
    run.lease_owner = None
    run.lease_expires_at = None


def unpublished_runs(session: Session, *, older_than_s: float, limit: int = 50) -> list[str]:
    """Finished runs whose MLflow update never completed (MLflow down, worker killed)."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
    return list(
        session.scalars(
            select(GateRun.id)
            .where(
                GateRun.status.in_(FINISHED_STATUSES),
                GateRun.published_at.is_(None),
                GateRun.finished_at < cutoff,
            )
            .order_by(GateRun.finished_at)
            .limit(limit)
        )
    )


def mark_published(session: Session, run_id: str) -> None:
    session.execute(update(GateRun).where(GateRun.id == run_id).values(published_at=utcnow()))


def passing_artifact_digests(session: Session, model_name: str, version: int) -> set[str]:
    """Artifact digests the gatekeeper itself recorded as passed for this version.

    The only evidence that a version is trustworthy: a tag can be set by any registry user,
    this table only by the gatekeeper.
    """
    return set(
        session.scalars(
            select(GateRun.artifact_digest).where(
                GateRun.model_name == model_name,
                GateRun.model_version == version,
                GateRun.status.in_(PROMOTABLE_STATUSES),
                GateRun.artifact_digest.is_not(None),
            )
        )
    )
