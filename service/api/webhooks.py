"""POST /webhooks/mlflow: verify, record the delivery, queue a run, answer 202 at once.

The payload is only a hint: the worker re-reads the version from MLflow before checking it.
Every rejection happens before anything is written, and none of them is a 500. Each one is a
warning line (the delivery id, a `RejectReason`, the status; never the body, the signature or
the secret) and counts in `gatekeeper_webhook_deliveries_total{outcome="rejected",reason=...}`:
a secret rotated on one side only shows there at once, not as versions the poller brings in
late.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from fastapi import APIRouter, BackgroundTasks, Request, status
from pydantic import BaseModel, StrictStr, ValidationError
from sqlalchemy.orm import Session

from service.api.deps import RegistryDep, SettingsDep
from service.api.schemas import WebhookAccepted, error_responses
from service.api.webhook_signature import signature_matches
from service.config import Settings
from service.errors import BadRequest, GatekeeperError, PayloadTooLarge, Unauthorized
from service.metrics import WEBHOOK_DELIVERIES
from service.mlflow.registry import Registry
from service.runs.guard import guard_model
from service.runs.intake import is_watched, request_run
from service.store.db import insert_stmt, transaction
from service.store.tables import Trigger, WebhookDelivery, utcnow
from service.vocabulary import TAG_PREFIX

P = ParamSpec("P")
T = TypeVar("T")
router = APIRouter(tags=["webhooks"])
log = logging.getLogger("gatekeeper.webhooks")

RUN_EVENTS = {("model_version", "created")}
# Recorded for the audit trail; alias events for the guarded alias and `gatekeeper.*` tag
# events also wake the registry guard (service/runs/guard.py), after the answer.
RECORDED_EVENTS = {
    ("model_version_alias", "created"),
    ("model_version_alias", "deleted"),
    ("model_version_tag", "set"),
    ("model_version_tag", "deleted"),
}


class WebhookNotConfigured(GatekeeperError):
    http_status = 503


class RejectReason(enum.StrEnum):
    """Why a delivery was refused: a small fixed set, the `reason` label of the metric."""

    NOT_CONFIGURED = "not_configured"  # no GATEKEEPER_WEBHOOK_SECRET here
    TOO_LARGE = "too_large"  # body over GATEKEEPER_WEBHOOK_MAX_BODY_BYTES
    MISSING_HEADERS = "missing_headers"  # no delivery id, timestamp or signature
    MALFORMED = "malformed"  # a header or the (signed) body is not what MLflow sends
    BAD_SIGNATURE = "bad_signature"  # wrong secret (rotated on one side only?) or altered body
    STALE_TIMESTAMP = "stale_timestamp"  # outside the window: a replay or a skewed clock


# every reason shows from the start (at 0), so an alert on its increase sees the first one
for _reason in RejectReason:
    WEBHOOK_DELIVERIES.labels(outcome="rejected", reason=_reason.value)


class _Refused(Exception):
    """A delivery refused: why, and the error its sender gets (mapped in service/app.py)."""

    def __init__(self, reason: RejectReason, error: GatekeeperError) -> None:
        super().__init__(str(error))
        self.reason = reason
        self.error = error


@router.post(
    "/webhooks/mlflow",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted,
    responses=error_responses(400, 401, 413, 503),
)
async def mlflow_webhook(
    request: Request, settings: SettingsDep, registry: RegistryDep, background: BackgroundTasks
) -> WebhookAccepted:
    try:
        delivery_id, signed_at, event = await _admit(request, settings)
    except _Refused as refused:
        _note_refusal(request, refused)
        raise refused.error from None
    accepted = await _in_thread(_record, settings, delivery_id, signed_at, event)
    WEBHOOK_DELIVERIES.labels(outcome=accepted.outcome, reason="").inc()
    if accepted.outcome != "duplicate" and event.wakes_guard(settings):
        assert event.name is not None
        version = event.version if event.entity == "model_version_tag" else None
        background.add_task(_guard, settings, registry, event.name, version)
    log.info(
        "webhook delivery=%s event=%s.%s outcome=%s run=%s",
        delivery_id,
        event.entity,
        event.action,
        accepted.outcome,
        accepted.run_id,
    )
    return accepted


def _guard(settings: Settings, registry: Registry, name: str, version: int | None) -> None:
    """After the answer: MLflow waits for no one, and the guard calls MLflow back."""
    try:
        guard_model(settings, registry, name, version=version)
    except Exception:  # the poller's cycle guards every model again
        log.exception("guard of model=%s after a webhook failed; the poller will retry", name)


async def _admit(request: Request, settings: Settings) -> tuple[str, int, WebhookEvent]:
    """The delivery id, signing time and event of a delivery; `_Refused` when it is not one."""
    if not settings.webhook_secret:
        raise _Refused(
            RejectReason.NOT_CONFIGURED,
            WebhookNotConfigured("GATEKEEPER_WEBHOOK_SECRET is not set; webhooks are refused"),
        )
    body = await _read_capped(request, settings.webhook_max_body_bytes)
    delivery_id, signed_at = _verify(request, body, settings)
    return delivery_id, signed_at, _parse(body)


def _note_refusal(request: Request, refused: _Refused) -> None:
    """One warning line and one count. Never the body, the signature or a secret."""
    WEBHOOK_DELIVERIES.labels(outcome="rejected", reason=refused.reason.value).inc()
    delivery_id = request.headers.get("x-mlflow-delivery-id", "")
    if not delivery_id:
        shown = "-"
    elif delivery_id.isascii() and delivery_id.isprintable():
        shown = delivery_id[:128] + ("..." if len(delivery_id) > 128 else "")
    else:
        shown = "(not printable ASCII)"
    log.warning(
        "webhook delivery=%s rejected: reason=%s status=%d client=%s: %s",
        shown,
        refused.reason.value,
        refused.error.http_status,
        request.client.host if request.client else "unknown",
        refused.error,
    )


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refused(
            RejectReason.TOO_LARGE,
            PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit"),
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(
                RejectReason.TOO_LARGE, PayloadTooLarge(f"body is over the {limit}-byte limit")
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _malformed(message: str) -> _Refused:
    return _Refused(RejectReason.MALFORMED, Unauthorized(message))


def _verify(request: Request, body: bytes, settings: Settings) -> tuple[str, int]:
    delivery_id = request.headers.get("x-mlflow-delivery-id", "")
    timestamp = request.headers.get("x-mlflow-timestamp", "")
    signature = request.headers.get("x-mlflow-signature", "")
    if not (delivery_id and timestamp and signature):
        raise _Refused(
            RejectReason.MISSING_HEADERS,
            Unauthorized("missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or X-MLflow-Signature"),
        )
    if len(delivery_id) > 128:
        raise _malformed("delivery id too long")
    # Headers arrive decoded as latin-1: anything but printable ASCII is not what MLflow
    # sends, and hmac.compare_digest would raise on it (a 500). Refuse it as unauthenticated.
    for name, value in (
        ("X-MLflow-Delivery-Id", delivery_id),
        ("X-MLflow-Timestamp", timestamp),
        ("X-MLflow-Signature", signature),
    ):
        if not (value.isascii() and value.isprintable()):
            raise _malformed(f"{name} is not printable ASCII")
    if not timestamp.isdigit():
        raise _malformed("X-MLflow-Timestamp is not unix seconds")
    assert settings.webhook_secret is not None
    if not signature_matches(settings.webhook_secret, delivery_id, timestamp, body, signature):
        raise _Refused(
            RejectReason.BAD_SIGNATURE,
            Unauthorized("signature does not match (wrong secret or altered body)"),
        )
    signed_at = int(timestamp)  # digits only, checked above
    if abs(time.time() - signed_at) > settings.webhook_max_age_s:
        raise _Refused(
            RejectReason.STALE_TIMESTAMP,
            Unauthorized(
                f"timestamp outside the {settings.webhook_max_age_s}s window (replay or clock skew)"
            ),
        )
    return delivery_id, signed_at


class _EventData(BaseModel):
    """`data` of an MLflow registry webhook: other keys (tags, alias, source) are ignored."""

    # recorded events (tags, aliases) may carry other shapes: judged below, per event
    name: object = None
    version: object = None
    alias: object = None
    key: object = None


class _Event(BaseModel):
    entity: StrictStr
    action: StrictStr
    data: _EventData


@dataclass(frozen=True)
class WebhookEvent:
    """What the gatekeeper takes from a delivery: the event and which version it names."""

    entity: str
    action: str
    name: str | None
    version: int | None
    alias: str | None = None
    key: str | None = None

    def wakes_guard(self, settings: Settings) -> bool:
        """An alias event for the guarded alias or a `gatekeeper.*` tag event."""
        if not self.name or not is_watched(settings, self.name):
            return False
        if self.entity == "model_version_alias":
            return self.alias == settings.alias
        if self.entity == "model_version_tag":
            return (self.key or "").startswith(TAG_PREFIX)
        return False


def _parse(body: bytes) -> WebhookEvent:
    try:
        event = _Event.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise _Refused(
            RejectReason.MALFORMED,
            BadRequest(f"not an MLflow webhook event: {where}: {first['msg']}"),
        ) from exc
    name = event.data.name if isinstance(event.data.name, str) else None
    version = event.data.version
    number = int(version) if isinstance(version, int | str) and str(version).isdigit() else None
    if (event.entity, event.action) in RUN_EVENTS:
        if not name or len(name) > 256:
            raise _Refused(RejectReason.MALFORMED, BadRequest("data.name must be a model name"))
        if number is None:
            raise _Refused(
                RejectReason.MALFORMED, BadRequest("data.version must be a version number")
            )
    alias = event.data.alias if isinstance(event.data.alias, str) else None
    key = event.data.key if isinstance(event.data.key, str) else None
    return WebhookEvent(event.entity, event.action, name, number, alias, key)


async def _in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args, **kwargs)


def _record(
    settings: Settings, delivery_id: str, signed_at: int, event: WebhookEvent
) -> WebhookAccepted:
    """Delivery row and run row in one transaction: a recorded delivery never lacks its run."""
    key = (event.entity, event.action)
    with transaction(settings.resolved_database_url) as session:
        if not _insert_delivery(session, delivery_id, signed_at, event):
            return WebhookAccepted(delivery_id=delivery_id, outcome="duplicate")
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        if key not in RUN_EVENTS:
            delivery.outcome = "recorded" if key in RECORDED_EVENTS else "ignored"
            return WebhookAccepted(delivery_id=delivery_id, outcome=delivery.outcome)
        # _parse refused a run event without a name and a version number
        assert event.name is not None and event.version is not None
        if not is_watched(settings, event.name):
            delivery.outcome = "not_watched"
            return WebhookAccepted(delivery_id=delivery_id, outcome=delivery.outcome)
        run_id, created = request_run(
            session,
            settings,
            model_name=event.name,
            version=event.version,
            trigger=Trigger.WEBHOOK,
        )
        delivery.outcome = "queued" if created else "already_queued"
        delivery.run_id = run_id
        return WebhookAccepted(delivery_id=delivery_id, outcome=delivery.outcome, run_id=run_id)


def _insert_delivery(
    session: Session, delivery_id: str, signed_at: int, event: WebhookEvent
) -> bool:
    inserted = session.scalar(
        insert_stmt(session, WebhookDelivery)
        .values(
            delivery_id=delivery_id,
            received_at=utcnow(),
            signed_at=signed_at,
            entity=event.entity[:64],
            action=event.action[:64],
            model_name=(event.name or "")[:256] or None,
            model_version=event.version,
            outcome="received",
        )
        .on_conflict_do_nothing(index_elements=["delivery_id"])
        .returning(WebhookDelivery.delivery_id)
    )
    return bool(inserted == delivery_id)
