"""ORM models. Timestamps are stored as UTC; nothing here is ever deleted by the service."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# the shared words live in service/vocabulary.py; re-exported here for the ORM's users
from service.vocabulary import (
    FINISHED_STATUSES as FINISHED_STATUSES,
)
from service.vocabulary import (
    PROMOTABLE_STATUSES as PROMOTABLE_STATUSES,
)
from service.vocabulary import (
    RunStatus as RunStatus,
)
from service.vocabulary import (
    Trigger as Trigger,
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores naive UTC, returns aware UTC, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class ModelVersion(Base):
    """A registered model version the gatekeeper has heard of, by whichever door."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_versions_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    discovered_via: Mapped[str] = mapped_column(String(16))
    mlflow_created_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # when MLflow was found not to have it any more: it can never hold the alias again
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class GateRun(Base):
    __tablename__ = "gate_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    model_name: Mapped[str] = mapped_column(String(256), index=True)
    model_version: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True, default=RunStatus.QUEUED)
    # One automatic run per (model, version, policy digest); manual runs leave it NULL.
    dedup_key: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    available_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    policy_digest: Mapped[str] = mapped_column(String(64))
    artifact_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    artifact_manifest: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # the rows gates were judged on: name, source, sha256 of the bytes read, row count
    datasets: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # How model code was contained when this run loaded a model: "bwrap" or "unconfined"
    # (the operator's opt-out, shown on the run page); NULL when no model was loaded.
    sandbox: Mapped[str | None] = mapped_column(String(16), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Transient failures (MLflow or the database unreachable) spend no attempt: they are
    # retried with backoff until `transient_since` is older than the retry horizon. A run that
    # still ends in error that way has error_kind "transient" and is re-queued by the poller
    # once MLflow answers again.
    transient_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    transient_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    requested_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set once the version tags (and alias, on pass) are in MLflow; NULL = still to publish.
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    results: Mapped[list[GateResultRow]] = relationship(
        back_populates="run", order_by="GateResultRow.id", lazy="selectin"
    )


class GateResultRow(Base):
    __tablename__ = "gate_results"
    __table_args__ = (UniqueConstraint("run_id", "gate", name="uq_gate_results_run_gate"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("gate_runs.id"), index=True)
    gate: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    findings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What a sandboxed model itself wrote (stderr tail, exception), truncated: admin-only in
    # the API, never on a page, a tag or in the decision.
    diagnostics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # An HTML report made in the sandbox (Giskard's scan): model-influenced, so it is only
    # ever served from an opaque origin (service/api/pages.py), never embedded in our pages.
    report_html: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    run: Mapped[GateRun] = relationship(back_populates="results")


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    delivery_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    signed_at: Mapped[int] = mapped_column(BigInteger)
    entity: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class ModelPromotion(Base):
    """Per registered model, the newest version the gatekeeper has promoted.

    Its row is the lock that keeps the alias moving forward only when workers race.
    """

    __tablename__ = "model_promotions"

    model_name: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)  # where the gatekeeper put the alias; 0: none
    run_id: Mapped[str] = mapped_column(String(36))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # where it was before the last recorded move: until MLflow shows the move (a publisher
    # that crashed between the record and MLflow), the alias there is not tampering
    previous_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(512))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PollerState(Base):
    """How far the poller has read MLflow's version list (creation timestamp, ms)."""

    __tablename__ = "poller_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    watermark_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Waiver(Base):
    """A time-boxed exception an approver granted: one gate or one rule, for one version or
    one artifact digest of a model. Never deleted: revoking sets `revoked_at`."""

    __tablename__ = "waivers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    model_name: Mapped[str] = mapped_column(String(256), index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    artifact_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    gate: Mapped[str | None] = mapped_column(String(32), nullable=True)
    rule_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # when the versions it let through were decided again after it expired or was revoked
    ended_handled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TamperEvent(Base):
    """Something in the registry did not match the record and was put back."""

    __tablename__ = "tamper_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    model_name: Mapped[str] = mapped_column(String(256), index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # alias | tag | artifact
    found: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ArtifactSignature(Base):
    """The OpenSSF model-signing bundle the gatekeeper made for a passing run's files."""

    __tablename__ = "signatures"

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(256), index=True)
    version: Mapped[int] = mapped_column(Integer)
    artifact_digest: Mapped[str] = mapped_column(String(64))
    bundle: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(64))  # sha256 of the public key (DER)
    mlflow_uri: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Incident(Base):
    """A quarantine: every version trained or evaluated on a dataset, or one version."""

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    dataset: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    model_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    affected: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{"model", "version"}]
    # sha256 of the bytes recorded under `dataset` when it opened: the same data under
    # another name, path or source is quarantined too (service/store/lineage.py)
    dataset_sha256s: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    opened_by: Mapped[str] = mapped_column(String(128))
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
