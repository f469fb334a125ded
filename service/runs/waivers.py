"""Waivers between the store and the decision: the row as the decision input sees it."""

from __future__ import annotations

from service.decision.document import WaiverRecord
from service.store.tables import Waiver


def waiver_record(waiver: Waiver) -> WaiverRecord:
    return WaiverRecord(
        id=waiver.id,
        model=waiver.model_name,
        version=waiver.version,
        artifact_digest=waiver.artifact_digest,
        gate=waiver.gate,
        rule_id=waiver.rule_id,
        reason=waiver.reason,
        expires_at=waiver.expires_at,
        created_by=waiver.created_by,
        revoked=waiver.revoked_at is not None,
    )
