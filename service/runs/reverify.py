"""Artifact drift: the alias holder's stored files, downloaded again and re-hashed.

The registry keeps a version's files in an artifact store that anyone with write access can
change after the gatekeeper checked them. On a schedule (`GATEKEEPER_REVERIFY_INTERVAL_S`)
and on every re-run, the files are hashed again and compared with the digest of the run that
let the version through; a mismatch is tampering (service/runs/guard.py): the version can no
longer hold the alias, which moves back to the newest version that still can.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sqlalchemy.orm import Session

from service.config import Settings
from service.mlflow.fetch import fetch_version
from service.mlflow.registry import Registry
from service.runs.guard import (
    TAMPERED,
    guarded_models,
    latest_runs,
    model_lock,
    reconcile_alias,
    record_artifact_tampering,
)
from service.store.db import transaction
from service.store.tables import PROMOTABLE_STATUSES, ModelPromotion

log = logging.getLogger("gatekeeper.reverify")


def promoted_digest(session: Session, name: str, version: int) -> str | None:
    """The artifact digest of the version's latest run, when that run let it through."""
    run = latest_runs(session, name).get(version)
    if run is None or run.status not in PROMOTABLE_STATUSES:
        return None
    return run.artifact_digest


def reverify_holders(settings: Settings, registry: Registry) -> int:
    """Re-hash every alias holder the gatekeeper put there; returns how many changed."""
    changed = 0
    for name in guarded_models(settings):
        with transaction(settings.resolved_database_url) as session:
            row = session.get(ModelPromotion, name)
            version = row.version if row is not None else 0
            expected = promoted_digest(session, name, version) if version else None
        if not version or expected is None:
            continue
        scratch = Path(settings.scratch_dir) / f"reverify-{name.replace('/', '_')}-{version}"
        try:
            fetched = fetch_version(registry, name, version, scratch)
        except Exception:
            log.exception("model=%s v%s could not be downloaded to re-verify", name, version)
            continue
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if fetched.digest == expected:
            continue
        changed += 1
        found = {"recorded_digest": expected, "found_digest": fetched.digest,
                 "how": "scheduled re-verification"}  # fmt: skip
        # under the model's guard lock: the guard must not find the new record before the tag
        with model_lock(name):
            record_artifact_tampering(settings, name, version, found)
            registry.set_version_tags(name, version, {"gatekeeper.status": TAMPERED})
        reconcile_alias(settings, registry, name)
    return changed
