"""Is this version one the gatekeeper holds promotable now? What deploy jobs ask.

A valid signature says "these files were let through once". A deploy job needs more: that the
version is still promotable now (its latest run passed, or was waived by a waiver that is
still active; it is not quarantined; its stored files were not found changed; MLflow still
has it) and, for an alias, that it is where the record puts the alias. Answered from the
record only, signed (service/integrity/envelope.py) so it cannot be forged in transit; the
revocation list is the same answer for every signed version at once, for offline checks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.runs.guard import ModelRecord
from service.store.tables import (
    PROMOTABLE_STATUSES,
    ArtifactSignature,
    GateRun,
    RunStatus,
    Trigger,
    Waiver,
)
from service.store.waivers import WaiverState, state_of


@dataclass(frozen=True)
class VersionStatus:
    model: str
    version: int
    promotable: bool
    alias_holder: bool  # the record puts the alias on it
    artifact_digest: str | None  # the files its latest promotable run judged
    run_id: str | None
    status: str | None  # the latest run's status
    reasons: list[str] = field(default_factory=list)  # why it is not promotable

    def document(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "promotable": self.promotable,
            "alias_holder": self.alias_holder,
            "artifact_digest": self.artifact_digest,
            "run_id": self.run_id,
            "status": self.status,
            "reasons": list(self.reasons),
        }


def version_status(
    session: Session, name: str, version: int, record: ModelRecord | None = None
) -> VersionStatus:
    record = record or ModelRecord.read(session, name)
    run = record.latest.get(version)
    reasons = _reasons(session, record, version, run)
    promotable = not reasons
    return VersionStatus(
        model=name,
        version=version,
        promotable=promotable,
        alias_holder=promotable and record.holder() == version,
        artifact_digest=run.artifact_digest if run is not None and promotable else None,
        run_id=run.id if run is not None else None,
        status=str(run.status) if run is not None else None,
        reasons=reasons,
    )


def _reasons(session: Session, record: ModelRecord, version: int, run: GateRun | None) -> list[str]:
    reasons = []
    if version in record.deleted:
        reasons.append("the version was deleted from MLflow")
    if version in record.quarantined:
        reasons.append("quarantined by an open incident")
    if version in record.artifact_tampered:
        reasons.append("its stored files were found changed after it was let through")
    if run is None:
        reasons.append("no finished run is recorded for it")
    elif run.status not in PROMOTABLE_STATUSES:
        why = f" ({run.requested_by})" if run.trigger == Trigger.WAIVER_ENDED else ""
        reasons.append(f"its latest run {run.id} is {run.status}{why}")
    elif run.status == RunStatus.WAIVED:
        reasons += _ended_waivers(session, run)
    return reasons


def _ended_waivers(session: Session, run: GateRun) -> list[str]:
    """A waived run stands only while every waiver that let it through is active: the answer
    changes the moment one ends, before the poller decides the version again."""
    used = {
        str(w) for e in (run.decision or {}).get("waived") or [] for w in e.get("waivers") or []
    }
    if not used:
        return []
    now = dt.datetime.now(dt.UTC)
    found = {w.id: w for w in session.scalars(select(Waiver).where(Waiver.id.in_(used)))}
    reasons = []
    for waiver_id in sorted(used):
        waiver = found.get(waiver_id)
        state = state_of(waiver, now) if waiver is not None else None
        if state != WaiverState.ACTIVE:
            reasons.append(f"waiver {waiver_id} that let it through is {state or 'gone'}")
    return reasons


@dataclass(frozen=True)
class Revocation:
    model: str
    version: int
    artifact_digest: str
    reasons: list[str]

    def document(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "artifact_digest": self.artifact_digest,
            "reasons": self.reasons,
        }


def revocations(session: Session) -> tuple[list[Revocation], dict[str, int]]:
    """Every signature the gatekeeper made whose version is not promotable now with those
    files, and where the record puts each model's alias (for offline alias checks)."""
    signed = session.execute(
        select(ArtifactSignature.model_name, ArtifactSignature.version,
               ArtifactSignature.artifact_digest).distinct()
    ).all()  # fmt: skip
    by_model: dict[str, list[tuple[int, str]]] = {}
    for name, version, digest in signed:
        by_model.setdefault(name, []).append((version, digest))
    revoked: list[Revocation] = []
    holders: dict[str, int] = {}
    for name in sorted(by_model):
        record = ModelRecord.read(session, name)
        holder = record.holder()
        if holder is not None:
            holders[name] = holder
        for version, digest in sorted(set(by_model[name])):
            status = version_status(session, name, version, record)
            reasons = list(status.reasons)
            if status.promotable and status.artifact_digest != digest:
                reasons.append("a later run of the version judged other files")
            if reasons:
                revoked.append(Revocation(name, version, digest, reasons))
    return revoked, holders
