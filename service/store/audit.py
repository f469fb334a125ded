"""Append-only audit trail: who did what to which target."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from service.store.tables import AuditEvent

log = logging.getLogger("gatekeeper.audit")


def record(
    session: Session, *, actor: str, action: str, target: str, details: dict[str, Any] | None = None
) -> None:
    session.add(AuditEvent(actor=actor, action=action, target=target, details=details or {}))
    log.info("audit actor=%s action=%s target=%s", actor, action, target)
