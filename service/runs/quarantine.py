"""Quarantine: pull every version that touched a poisoned or leaking dataset, in one call.

An incident names a dataset (source or digest; lineage finds the versions trained or
evaluated on it) or one version. While it is open, those versions are tagged
`gatekeeper.status=quarantined`, cannot hold the alias (it moves back to the newest
unaffected promotable version, or goes) and a re-run does not promote them. Closing it puts
their tags and the alias back to what their runs say. Both are audited.
"""

from __future__ import annotations

import logging

from service.config import Settings
from service.errors import BadRequest, NotFound
from service.mlflow.registry import Registry
from service.runs.guard import QUARANTINED, model_lock, reconcile_alias, restore_tags
from service.store import audit
from service.store.db import transaction
from service.store.lineage import versions_using
from service.store.tables import Incident, utcnow

log = logging.getLogger("gatekeeper.quarantine")


def open_incident(
    settings: Settings,
    registry: Registry,
    *,
    actor: str,
    reason: str,
    dataset: str | None = None,
    model: str | None = None,
    version: int | None = None,
) -> str:
    if (dataset is None) == (model is None or version is None):
        raise BadRequest("name a dataset, or a model and a version")
    with transaction(settings.resolved_database_url) as session:
        if dataset is not None:
            entries = versions_using(session, dataset)
            affected = sorted({(e.model, e.version) for e in entries})
        else:
            assert model is not None and version is not None
            affected = [(model, version)]
        incident = Incident(
            dataset=dataset, model_name=model, version=version, reason=reason,
            affected=[{"model": m, "version": v} for m, v in affected], opened_by=actor,
        )  # fmt: skip
        session.add(incident)
        session.flush()
        incident_id = incident.id
        audit.record(
            session,
            actor=actor,
            action="incident.opened",
            target=f"incident/{incident_id}",
            details={"dataset": dataset, "model": model, "version": version,
                     "reason": reason, "affected": incident.affected},
        )  # fmt: skip
    for name in sorted({m for m, _ in affected}):
        with model_lock(name):  # the guard must see the record and the tags agree
            for m, v in affected:
                if m == name:
                    registry.set_version_tags(name, v, {"gatekeeper.status": QUARANTINED})
        reconcile_alias(settings, registry, name, actor=actor)
    log.warning("incident %s opened by %s: %d versions quarantined", incident_id, actor,
                len(affected))  # fmt: skip
    return incident_id


def close_incident(settings: Settings, registry: Registry, incident_id: str, *, actor: str) -> None:
    with transaction(settings.resolved_database_url) as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            raise NotFound(f"no incident {incident_id}")
        if incident.closed_at is not None:
            return
        incident.closed_at, incident.closed_by = utcnow(), actor
        affected = [a for a in incident.affected or [] if isinstance(a, dict)]
        models = sorted({str(a["model"]) for a in affected})
        audit.record(
            session, actor=actor, action="incident.closed", target=f"incident/{incident_id}",
            details={"affected": incident.affected},
        )  # fmt: skip
    for name in models:  # tags and alias back to what the runs say
        with model_lock(name):
            for item in affected:
                if item["model"] == name:
                    restore_tags(settings, registry, name, int(item["version"]))
        reconcile_alias(settings, registry, name, actor=actor)
