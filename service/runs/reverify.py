"""Artifact drift: every promotable version's stored files, downloaded again and re-hashed.

The registry keeps a version's files in an artifact store that anyone with write access can
change after the gatekeeper checked them. On a schedule (`GATEKEEPER_REVERIFY_INTERVAL_S`)
every version the alias could move onto (latest run promotable, not quarantined, not found
changed or deleted before) is hashed again and compared with the digest of the run that let
it through; so is a version on every re-run (the worker) and before every alias move (the
guard). A mismatch is tampering (service/runs/guard.py): the version can no longer hold the
alias, which moves back to the newest version that still can.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from service.config import Settings
from service.mlflow.port import RegistryPort
from service.runs.guard import (
    ModelRecord,
    guarded_models,
    latest_runs,
    mark_version_deleted,
    reconcile_alias,
    record_artifact_tampering,
)
from service.runs.rehash import Rehash, rehash_version
from service.store.db import transaction
from service.store.model_lock import model_lock
from service.store.tables import PROMOTABLE_STATUSES
from service.vocabulary import TagKey, VersionState

log = logging.getLogger("gatekeeper.reverify")


def promoted_digest(session: Session, name: str, version: int) -> str | None:
    """The artifact digest of the version's latest run, when that run let it through."""
    run = latest_runs(session, name).get(version)
    if run is None or run.status not in PROMOTABLE_STATUSES:
        return None
    return run.artifact_digest


def promotable_digests(session: Session, name: str) -> dict[int, str]:
    """Every version the alias could move onto -> the digest its passing run recorded."""
    record = ModelRecord.read(session, name)
    ruled_out = record.quarantined | record.artifact_tampered | record.deleted
    return {
        version: run.artifact_digest
        for version, run in record.latest.items()
        if run.status in PROMOTABLE_STATUSES and run.artifact_digest and version not in ruled_out
    }


def reverify_promotable(settings: Settings, registry: RegistryPort) -> int:
    """Re-hash every promotable version of every model; returns how many changed or went."""
    changed = 0
    for name in guarded_models(settings):
        with transaction(settings.resolved_database_url) as session:
            versions = promotable_digests(session, name)
        found = 0
        for version, expected in sorted(versions.items(), reverse=True):
            try:
                outcome = rehash_version(settings, registry, name, version, expected)
            except Exception:
                log.exception("model=%s v%s could not be downloaded to re-verify", name, version)
                continue
            if outcome.verdict == Rehash.SAME:
                continue
            found += 1
            # under the model's guard lock: the guard must not find the record before the tag
            with model_lock(settings.resolved_database_url, name):
                if outcome.verdict == Rehash.DELETED:
                    mark_version_deleted(settings, name, version, how="scheduled re-verification")
                    continue
                details = {
                    "recorded_digest": expected,
                    "found_digest": outcome.found_digest,
                    "how": "scheduled re-verification",
                    "detail": outcome.detail,
                }
                record_artifact_tampering(settings, name, version, details)
                registry.set_version_tags(name, version, {TagKey.STATUS: VersionState.TAMPERED})
        if found:
            changed += found
            reconcile_alias(settings, registry, name)
    return changed
