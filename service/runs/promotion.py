"""Publish a recorded run to MLflow: version tags always, the alias only on pass, forward only.

An outbox: the decision is committed first (the tags are derived from it); the alias move is
decided and recorded, with its `alias.set` audit row, in one transaction *before* MLflow is
touched; then the publisher applies tags and alias idempotently and marks the run published.
A crash anywhere leaves `published_at` NULL and the poller publishes again: a recorded move
that MLflow does not show yet is applied without a second audit row, and an alias found
already on the version (moved by a crash, or by hand) is completed in the record instead of
skipped. Every path converges on one `alias.set` row per move.

`GATEKEEPER_FAULT_INJECT=publish:after-intent|publish:after-alias` kills the process at that
point; it exists for the crash tests (tests/e2e/test_outages.py) and does nothing else.
"""

from __future__ import annotations

import logging
import os

from sqlalchemy import select

from gates.base import Finding, Status
from service.config import Settings
from service.metrics import ALIAS_MOVES
from service.mlflow.registry import Registry
from service.runs.queue import mark_published
from service.store import audit
from service.store.db import insert_stmt, transaction
from service.store.tables import (
    FINISHED_STATUSES,
    PROMOTABLE_STATUSES,
    GateRun,
    ModelPromotion,
    RunStatus,
    utcnow,
)

log = logging.getLogger("gatekeeper.promotion")

TAG_PREFIX = "gatekeeper."
MAX_TAG_VALUE = 500


def report_url(settings: Settings, run_id: str) -> str:
    return f"{settings.public_url.rstrip('/')}/runs/{run_id}"


def running_tags(settings: Settings, run_id: str) -> dict[str, str]:
    return {
        "gatekeeper.status": RunStatus.RUNNING,
        "gatekeeper.run_id": run_id,
        "gatekeeper.report_url": report_url(settings, run_id),
    }


def final_tags(settings: Settings, run: GateRun) -> dict[str, str]:
    """Tags in the order they are written: `gatekeeper.status` last, so whoever sees the final
    status (MLflow sets tags one call at a time) also sees every other tag of the run."""
    tags = {
        "gatekeeper.run_id": run.id,
        "gatekeeper.report_url": report_url(settings, run.id),
        "gatekeeper.policy_digest": run.policy_digest,
        "gatekeeper.artifact_digest": run.artifact_digest or "",
    }
    # what the decision says of each gate (`warn` for a gate in warn mode that did not pass,
    # `waived` for one a waiver let through), else the gate's own status
    decided = (run.decision or {}).get("gates") or {}
    for result in run.results:
        tags[f"gatekeeper.gate.{result.gate}"] = str(decided.get(result.gate, result.status))
    # always written, so a later passing run replaces an earlier run's finding
    tags["gatekeeper.finding"] = (_top_finding(run) or "none")[:MAX_TAG_VALUE]
    deny = (run.decision or {}).get("deny") or []
    summary = deny[0] if deny else (run.error_message or "all enforced gates passed")
    tags["gatekeeper.summary"] = summary[:MAX_TAG_VALUE]
    tags["gatekeeper.status"] = run.status
    return tags


def _top_finding(run: GateRun) -> str | None:
    """The most severe finding of a failing gate, as one line for the registry UI."""
    blocking = (Status.FAIL.value, Status.ERROR.value)
    candidates = [
        Finding.from_dict(f) for r in run.results if r.status in blocking for f in r.findings or []
    ]
    if not candidates:
        return None
    worst = max(candidates, key=lambda f: f.severity.rank)
    return f"{worst.severity} {worst.rule_id} {worst.where}: {worst.message}"


def publish_run(settings: Settings, registry: Registry, run_id: str) -> None:
    url = settings.resolved_database_url
    with transaction(url) as session:
        run = session.get(GateRun, run_id)
        if run is None or run.status not in FINISHED_STATUSES:
            return
        tags = final_tags(settings, run)
        name, version, status = run.model_name, run.model_version, run.status
    registry.set_version_tags(name, version, tags)
    if status in PROMOTABLE_STATUSES:
        promote_if_newest(settings, registry, name=name, version=version, run_id=run_id)
        _fault_point("publish:after-alias")
    with transaction(url) as session:
        mark_published(session, run_id)
    log.info("run=%s published model=%s version=%s status=%s", run_id, name, version, status)


def _fault_point(name: str) -> None:
    if os.environ.get("GATEKEEPER_FAULT_INJECT") == name:
        log.error("fault injected at %s: exiting now", name)
        os._exit(137)


def promote_if_newest(
    settings: Settings, registry: Registry, *, name: str, version: int, run_id: str
) -> bool:
    """Point the alias at `version` unless a newer version holds or held it.

    The model's promotion row is locked for the check and the record, so two workers passing
    v2 and v3 at once cannot interleave and leave the alias on v2. Returns True when this call
    recorded a new move.
    """
    alias = settings.alias
    with transaction(settings.resolved_database_url) as session:
        session.execute(
            insert_stmt(session, ModelPromotion)
            .values(model_name=name, version=0, run_id="", updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=["model_name"])
        )
        row = session.scalars(
            select(ModelPromotion).where(ModelPromotion.model_name == name).with_for_update()
        ).one()
        holder = registry.alias_version(name, alias)
        recorded = row.version == version  # an earlier publish recorded this move already
        if not recorded:
            newest = max(row.version, holder or 0)
            if version < newest:
                audit.record(
                    session,
                    actor="gatekeeper",
                    action="alias.kept",
                    target=f"{name}/{version}",
                    details={
                        "alias": alias,
                        "holder": holder,
                        "newest_promoted": row.version,
                        "reason": f"version {newest} is newer; the alias moves forward only",
                    },
                )
                return False
            row.version, row.run_id, row.updated_at = version, run_id, utcnow()
            audit.record(
                session,
                actor="gatekeeper",
                action="alias.set",
                target=f"{name}/{version}",
                details={
                    "alias": alias,
                    "previous": row_previous(holder, version),
                    "run_id": run_id,
                    "found_in_mlflow": holder == version,
                },
            )
    _fault_point("publish:after-intent")
    if holder != version:
        registry.set_alias(name, alias, version)  # idempotent: the record says it should be
    if not recorded:
        ALIAS_MOVES.inc()
    return not recorded


def row_previous(holder: int | None, version: int) -> int | None:
    """The version the alias moves from (None when it was already on `version` or nowhere)."""
    return None if holder == version else holder
