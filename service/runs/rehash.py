"""Download a version's stored files again and hash them: what the alias may move onto.

The artifact store is writable by anyone with store access, after the gatekeeper judged the
files. So before the alias moves onto a version (service/runs/guard.py) and on the scheduled
re-verification (service/runs/reverify.py), the files are fetched and their manifest digest
compared with the digest of the run that let the version through.
"""

from __future__ import annotations

import enum
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from service.config import Settings
from service.errors import BoundExceeded, RegistryNotFound
from service.mlflow.fetch import fetch_version
from service.mlflow.port import RegistryPort
from service.policy import policy_for


class Rehash(enum.StrEnum):
    SAME = "same"  # the files hash to the recorded digest
    CHANGED = "changed"  # they do not (or grew past the policy's bound): tampering
    DELETED = "deleted"  # MLflow has no such version any more


@dataclass(frozen=True)
class RehashOutcome:
    verdict: Rehash
    found_digest: str | None = None
    detail: str = ""


def rehash_version(
    settings: Settings, registry: RegistryPort, name: str, version: int, expected: str
) -> RehashOutcome:
    """Fetch and hash `name` v`version`; MLflow unreachable raises (the caller retries)."""
    limits = policy_for(name, settings.policy_path).limits
    scratch = Path(settings.scratch_dir) / f"rehash-{uuid.uuid4().hex}"
    try:
        fetched = fetch_version(
            registry, name, version, scratch, max_bytes=int(limits.max_artifact_gb * 1024**3)
        )
    except RegistryNotFound as exc:
        return RehashOutcome(Rehash.DELETED, detail=str(exc))
    except BoundExceeded as exc:
        return RehashOutcome(Rehash.CHANGED, detail=str(exc))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if fetched.digest != expected:
        return RehashOutcome(Rehash.CHANGED, fetched.digest, "the stored files changed")
    return RehashOutcome(Rehash.SAME, fetched.digest)
