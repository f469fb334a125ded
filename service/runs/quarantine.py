"""Quarantine: pull every version that touched a poisoned or leaking dataset, in one call.

An incident names a dataset (source or digest; lineage finds the versions trained or
evaluated on it) or one version. While it is open, those versions are tagged
`gatekeeper.status=quarantined`, cannot hold the alias (it moves back to the newest
unaffected promotable version, or goes) and a re-run does not promote them. Closing it puts
their tags and the alias back to what their runs say. Both are audited.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from service.config import Settings
from service.errors import BadRequest, NotFound
from service.mlflow.port import RegistryPort
from service.runs.guard import reconcile_alias, restore_tags
from service.store import audit
from service.store.db import transaction
from service.store.lineage import versions_using
from service.store.model_lock import model_lock
from service.store.tables import Incident, utcnow
from service.vocabulary import TagKey, VersionState

log = logging.getLogger("gatekeeper.quarantine")


def open_incident(
    settings: Settings,
    registry: RegistryPort,
    *,
    actor: str,
    reason: str,
    dataset: str | None = None,
    model: str | None = None,
    version: int | None = None,
) -> str:
    if (dataset is None) == (model is None or version is None):
        raise BadRequest("name a dataset, or a model and a version")
    sha256s: list[str] = []
    if dataset is not None:
        with transaction(settings.resolved_database_url) as session:
            # the bytes recorded under that name: the same data anywhere else is affected too
            named = versions_using(session, dataset)
            sha256s = sorted({e.sha256 for e in named if e.sha256})
            entries = versions_using(session, dataset, sha256s=sha256s)
            affected = sorted({(e.model, e.version) for e in entries})
    else:
        assert model is not None and version is not None
        affected = [(model, version)]
    models = sorted({m for m, _ in affected})
    # The record and the tags change together under the guard's locks of every model: a
    # guard between the two would take the gatekeeper's own change for tampering.
    with _locks(settings.resolved_database_url, models):
        with transaction(settings.resolved_database_url) as session:
            incident = Incident(
                dataset=dataset, model_name=model, version=version, reason=reason,
                affected=[{"model": m, "version": v} for m, v in affected], opened_by=actor,
                dataset_sha256s=sha256s or None,
            )  # fmt: skip
            session.add(incident)
            session.flush()
            incident_id = incident.id
            details = {"dataset": dataset, "model": model, "version": version,
                       "reason": reason, "affected": incident.affected,
                       "dataset_sha256s": sha256s}  # fmt: skip
            audit.record(session, actor=actor, action="incident.opened",
                         target=f"incident/{incident_id}", details=details)  # fmt: skip
        for m, v in affected:
            registry.set_version_tags(m, v, {TagKey.STATUS: VersionState.QUARANTINED})
        for name in models:
            reconcile_alias(settings, registry, name, actor=actor)
    log.warning("incident %s opened by %s: %d versions quarantined", incident_id, actor,
                len(affected))  # fmt: skip
    return incident_id


@contextlib.contextmanager
def _locks(database_url: str, models: list[str]) -> Iterator[None]:
    """The guard's lock of each model, in name order (no two callers deadlock)."""
    with contextlib.ExitStack() as stack:
        for name in sorted(models):
            stack.enter_context(model_lock(database_url, name))
        yield


def close_incident(
    settings: Settings, registry: RegistryPort, incident_id: str, *, actor: str
) -> None:
    with transaction(settings.resolved_database_url) as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            raise NotFound(f"no incident {incident_id}")
        if incident.closed_at is not None:
            return
        affected = [a for a in incident.affected or [] if isinstance(a, dict)]
    models = sorted({str(a["model"]) for a in affected})
    with _locks(settings.resolved_database_url, models):
        with transaction(settings.resolved_database_url) as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None
            incident.closed_at, incident.closed_by = utcnow(), actor
            audit.record(
                session, actor=actor, action="incident.closed",
                target=f"incident/{incident_id}", details={"affected": affected},
            )  # fmt: skip
        for item in affected:  # tags and alias back to what the runs say
            restore_tags(settings, registry, str(item["model"]), int(item["version"]))
        for name in models:
            reconcile_alias(settings, registry, name, actor=actor)
