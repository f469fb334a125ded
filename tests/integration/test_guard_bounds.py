""" "A run is being published" is a bounded state, and a stuck publish is an alert.

Real SQLite database, runs recorded as the worker records them (no MLflow needed: what is
under test is what the guard and the poller read from the record)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prometheus_client import REGISTRY
from sqlalchemy import select

from service.config import Settings
from service.runs.guard import being_published
from service.runs.poller import alert_stuck_publishes
from service.store.db import transaction
from service.store.tables import AuditEvent, GateRun, RunStatus, utcnow


def _finished(url: str, name: str, version: int, minutes_ago: float) -> str:
    with transaction(url) as session:
        run = GateRun(
            model_name=name, model_version=version, trigger="manual", status=RunStatus.ERROR,
            policy_digest="p", finished_at=utcnow() - dt.timedelta(minutes=minutes_ago),
        )  # fmt: skip
        session.add(run)
        session.flush()
        return run.id


def test_the_guard_waits_for_a_publisher_only_for_a_bounded_time(database_url: str) -> None:
    """A run whose publish can never complete (its version was deleted) must not keep the
    guard away from the model for good."""
    _finished(database_url, "credit", 3, minutes_ago=0.1)
    _finished(database_url, "credit", 2, minutes_ago=30)
    with transaction(database_url) as session:
        assert being_published(session, "credit", window_s=60) == {3}
        assert being_published(session, "credit", window_s=1) == set()


def test_a_publish_stuck_past_its_bound_is_audited_once_and_counted(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, publish_stuck_after_s=600
    )  # fmt: skip
    stuck = _finished(database_url, "credit", 3, minutes_ago=20)
    _finished(database_url, "credit", 4, minutes_ago=1)  # still within its bound
    assert alert_stuck_publishes(settings) == [stuck]
    assert alert_stuck_publishes(settings) == [stuck]  # the gauge stays; the audit row does not
    assert REGISTRY.get_sample_value("gatekeeper_publish_stuck_runs") == 1.0
    with transaction(database_url) as session:
        rows = session.scalars(
            select(AuditEvent.target).where(AuditEvent.action == "run.publish_stuck")
        ).all()
    assert rows == [stuck]
