"""Reconciliation: find versions that have no run yet, and runs not yet published.

MLflow delivers webhooks a few times at most and keeps no history, so this loop is what makes
intake reliable. It reads MLflow's version list newest first and stops at the watermark (the
newest creation time it has already seen, less a small skew), so a cycle costs O(new versions),
not O(all versions).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from service.config import Settings
from service.errors import RegistryNotFound
from service.metrics import POLL_CYCLES, PUBLISH_STUCK
from service.mlflow.port import RegistryPort
from service.runs.guard import guard_model, guarded_models
from service.runs.intake import is_watched, request_run
from service.runs.promotion import publish_run
from service.runs.queue import requeue_transient_errors, unpublished_runs
from service.runs.reverify import reverify_promotable
from service.runs.waiver_end import handle_ended_waivers
from service.store import audit
from service.store.db import transaction
from service.store.tables import AuditEvent, PollerState, Trigger, utcnow

log = logging.getLogger("gatekeeper.poller")

STATE_KEY = "model_versions"
# Versions created within this window before the watermark are looked at again, in case a
# slower registration committed after a newer one was already seen. Dedup makes it harmless.
SKEW_MS = 10_000
PAGE_SIZE = 50
READY = "READY"


@dataclass(frozen=True)
class PollReport:
    examined: int
    enqueued: int
    republished: int
    watermark_ms: int


def poll_once(settings: Settings, registry: RegistryPort, skew_ms: int = SKEW_MS) -> PollReport:
    url = settings.resolved_database_url
    requeue_after_outage(settings, registry)
    with transaction(url) as session:
        state = session.get(PollerState, STATE_KEY)
        watermark = state.watermark_ms if state else 0
    examined = enqueued = 0
    newest_seen = watermark
    oldest_pending: int | None = None
    for info in registry.newest_versions(page_size=PAGE_SIZE):
        if info.created_ms < watermark - skew_ms:
            break
        examined += 1
        newest_seen = max(newest_seen, info.created_ms)
        if info.status != READY:
            # Still uploading: do not move the watermark past it, look again next cycle.
            oldest_pending = min(oldest_pending or info.created_ms, info.created_ms)
            continue
        if not is_watched(settings, info.name):
            continue
        with transaction(url) as session:
            _, created = request_run(
                session,
                settings,
                model_name=info.name,
                version=info.version,
                trigger=Trigger.POLLER,
                created_ms=info.created_ms,
            )
        if created:
            enqueued += 1
            log.info("poller queued model=%s version=%s (no run yet)", info.name, info.version)
    new_watermark = newest_seen if oldest_pending is None else min(newest_seen, oldest_pending)
    with transaction(url) as session:
        state = session.get(PollerState, STATE_KEY)
        if state is None:
            session.add(
                PollerState(name=STATE_KEY, watermark_ms=new_watermark, updated_at=utcnow())
            )
        else:
            state.watermark_ms = max(state.watermark_ms, new_watermark)
            state.updated_at = utcnow()
    return PollReport(examined, enqueued, republish_pending(settings, registry), new_watermark)


def requeue_after_outage(settings: Settings, registry: RegistryPort) -> int:
    """Runs that gave up because MLflow or the database stayed down: queued again once MLflow
    answers (a new attempt of the same run)."""
    if not registry.is_healthy():
        return 0
    with transaction(settings.resolved_database_url) as session:
        requeued = requeue_transient_errors(session)
        for run_id in requeued:
            audit.record(
                session,
                actor="gatekeeper",
                action="run.requeued",
                target=run_id,
                details={"reason": "ended error on an outage; the dependency is back"},
            )
    for run_id in requeued:
        log.info("run=%s re-queued: its dependency is back after an outage", run_id)
    return len(requeued)


def republish_pending(settings: Settings, registry: RegistryPort) -> int:
    with transaction(settings.resolved_database_url) as session:
        # a live worker publishes right after recording: older than the window means it did not
        pending = unpublished_runs(session, older_than_s=settings.publish_window_s)
    done = 0
    for run_id in pending:
        try:
            publish_run(settings, registry, run_id)
            done += 1
        except Exception:
            log.exception("run=%s still cannot be published to MLflow", run_id)
    alert_stuck_publishes(settings)
    return done


def alert_stuck_publishes(settings: Settings) -> list[str]:
    """Runs recorded longer than `publish_stuck_after_s` ago and still not in MLflow: the
    gauge says how many, each gets one audit row and an error line an operator can act on."""
    with transaction(settings.resolved_database_url) as session:
        stuck = unpublished_runs(session, older_than_s=settings.publish_stuck_after_s, limit=1000)
        PUBLISH_STUCK.set(len(stuck))
        alerted = set(
            session.scalars(
                select(AuditEvent.target).where(
                    AuditEvent.action == "run.publish_stuck", AuditEvent.target.in_(stuck)
                )
            )
        )
        for run_id in stuck:
            if run_id in alerted:
                continue
            audit.record(
                session, actor="gatekeeper", action="run.publish_stuck", target=run_id,
                details={"after_s": settings.publish_stuck_after_s},
            )  # fmt: skip
            log.error(
                "run=%s recorded but still not published to MLflow after %.0f s: its tags and "
                "the alias may not match the record (see the log lines above for why)",
                run_id, settings.publish_stuck_after_s,
            )  # fmt: skip
    return stuck


def guard_all(settings: Settings, registry: RegistryPort) -> None:
    """Every model the gatekeeper has a record of: alias and tags against the record."""
    for name in guarded_models(settings):
        try:
            guard_model(settings, registry, name)
        except RegistryNotFound as exc:  # the registered model is gone: nothing to guard
            log.info("guard of model=%s skipped: %s", name, exc)
        except Exception:
            log.exception("guard of model=%s failed; next cycle retries", name)


def run_poller(settings: Settings, registry: RegistryPort, stop: threading.Event) -> None:
    log.info("poller started, every %.0fs", settings.poll_interval_s)
    next_reverify = time.monotonic() + settings.reverify_interval_s
    while not stop.is_set():
        try:
            report = poll_once(settings, registry)
            if report.enqueued or report.republished:
                log.info("poller cycle: %s", report)
            handle_ended_waivers(settings, registry)
            guard_all(settings, registry)
            if time.monotonic() >= next_reverify:
                next_reverify = time.monotonic() + settings.reverify_interval_s
                changed = reverify_promotable(settings, registry)
                log.info("re-verified promotable versions: %d changed or deleted", changed)
            POLL_CYCLES.labels(outcome="ok").inc()
        except Exception:
            POLL_CYCLES.labels(outcome="failed").inc()
            log.exception("poller cycle failed; next cycle in %.0fs", settings.poll_interval_s)
        stop.wait(settings.poll_interval_s)


def start_poller_thread(
    settings: Settings, registry: RegistryPort, stop: threading.Event
) -> threading.Thread:
    thread = threading.Thread(
        target=run_poller, args=(settings, registry, stop), name="poller", daemon=True
    )
    thread.start()
    return thread
