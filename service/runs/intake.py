"""The one effect of all three doors (webhook, poller, manual API): a queued run."""

from __future__ import annotations

import fnmatch

from sqlalchemy.orm import Session

from service.config import Settings
from service.metrics import RUNS_ENQUEUED
from service.policy import policy_for
from service.runs.queue import enqueue_run
from service.store.db import insert_stmt
from service.store.tables import ModelVersion, Trigger, utcnow


def is_watched(settings: Settings, model_name: str) -> bool:
    return fnmatch.fnmatchcase(model_name, settings.models)


def request_run(
    session: Session,
    settings: Settings,
    *,
    model_name: str,
    version: int,
    trigger: Trigger,
    requested_by: str | None = None,
    created_ms: int | None = None,
) -> tuple[str, bool]:
    """Queue a run; automatic triggers collapse onto one run per version and policy."""
    _remember_version(session, model_name, version, trigger, created_ms)
    run_id, created = enqueue_run(
        session,
        model_name=model_name,
        version=version,
        trigger=trigger,
        policy_digest=policy_for(model_name, settings.policy_path).digest,
        max_attempts=settings.max_attempts,
        automatic=trigger != Trigger.MANUAL,
        requested_by=requested_by,
    )
    if created:
        RUNS_ENQUEUED.labels(trigger=trigger).inc()
    return run_id, created


def _remember_version(
    session: Session, name: str, version: int, via: str, created_ms: int | None
) -> None:
    session.execute(
        insert_stmt(session, ModelVersion)
        .values(
            name=name,
            version=version,
            discovered_via=via,
            mlflow_created_ms=created_ms,
            first_seen_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["name", "version"])
    )
