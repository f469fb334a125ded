"""Publish a recorded run to MLflow: version tags always, then the alias where the record says.

An outbox: the decision is committed first (the tags are derived from it); the alias follows
the guard's rule (service/runs/guard.py: the newest version whose latest run is promotable,
not quarantined, files unchanged), so a passing run promotes forward only and a failing re-run
of the holder takes the alias back. The move is recorded, with its audit row, *before* MLflow
is touched; a crash anywhere leaves `published_at` NULL and the poller publishes again: a
recorded move that MLflow does not show yet is applied without a second audit row, and an
alias found already on the version is completed in the record. Every path converges on one
`alias.set` row per move.

`GATEKEEPER_FAULT_INJECT=publish:after-intent|publish:after-alias` kills the process at that
point; it exists for the crash tests (tests/e2e/test_outages.py) and does nothing else.
"""

from __future__ import annotations

import logging

from service.config import Settings
from service.errors import RegistryNotFound
from service.mlflow.port import RegistryPort
from service.runs.guard import (
    ModelRecord,
    fault_point,
    mark_version_deleted,
    reconcile_alias,
    recorded_tags,
)
from service.runs.queue import mark_published
from service.store.db import transaction
from service.store.model_lock import model_lock
from service.store.tables import FINISHED_STATUSES, ArtifactSignature, GateRun
from service.vocabulary import TagKey

log = logging.getLogger("gatekeeper.promotion")


def publish_run(settings: Settings, registry: RegistryPort, run_id: str) -> None:
    """Tags from the record, then the alias where the record says (the guard's one rule:
    the newest promotable version), then the run is marked published.

    Under the model's lock, across processes: the worker that recorded the run and every
    replica's poller may all try; the first publishes, the rest find it published."""
    url = settings.resolved_database_url
    with transaction(url) as session:
        run = session.get(GateRun, run_id)
        if run is None or run.published_at is not None:
            return
        name = run.model_name
    with model_lock(url, name):
        _publish_locked(settings, registry, run_id)


def _publish_locked(settings: Settings, registry: RegistryPort, run_id: str) -> None:
    url = settings.resolved_database_url
    with transaction(url) as session:
        run = session.get(GateRun, run_id)
        if run is None or run.published_at is not None:
            return  # published by another process while this one waited for the lock
        signed = session.get(ArtifactSignature, run_id)
        unlogged = (
            (signed.model_name, signed.version, signed.bundle)
            if signed is not None and signed.mlflow_uri is None
            else None
        )
    if unlogged is not None:  # logged once; the row remembers where
        logged = registry.log_signature(*unlogged)
        with transaction(url) as session:
            row = session.get(ArtifactSignature, run_id)
            if row is not None and row.mlflow_uri is None:
                row.mlflow_uri = logged
    with transaction(url) as session:
        run = session.get(GateRun, run_id)
        if run is None or run.status not in FINISHED_STATUSES:
            return
        name, version = run.model_name, run.model_version
        tags = recorded_tags(settings, session, ModelRecord.read(session, name), run)
        session.expunge(run)
    try:
        registry.set_version_tags(name, version, tags)
    except RegistryNotFound:
        # deleted in MLflow (mid-run or since): the run still ends; its version can never
        # hold the alias, and the rest of the model is guarded as before
        mark_version_deleted(settings, name, version, how=f"publishing run {run_id}")
    try:
        reconcile_alias(settings, registry, name, published=run)
    except RegistryNotFound as exc:
        # the registered model itself is gone, or the version the alias was moving to went
        # in between: nothing of this run is left to publish; the guard's next pass applies
        # the rule to whatever the model still has
        log.warning("run=%s model=%s alias not reconciled: %s", run_id, name, exc)
    fault_point("publish:after-alias")
    with transaction(url) as session:
        mark_published(session, run_id)
    # The guard leaves a version alone while its run is being published; an alias moved by
    # hand in that window is caught here, now that the guard would act on it again.
    try:
        reconcile_alias(settings, registry, name)
    except RegistryNotFound as exc:
        log.warning("model=%s alias not reconciled after run=%s: %s", name, run_id, exc)
    log.info(
        "run=%s published model=%s version=%s status=%s",
        run_id, name, version, tags[TagKey.STATUS],
    )  # fmt: skip
