"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os
import shutil
import uuid

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from service.api.deps import RegistryDep, SettingsDep
from service.errors import disk_error_kind
from service.store.db import read_engine_for

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(settings: SettingsDep, registry: RegistryDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with read_engine_for(settings.resolved_database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    checks["mlflow"] = "ok" if registry.is_healthy() else "unavailable"
    checks["data_dir"] = _data_dir_check(settings.data_dir, settings.min_free_disk_mb)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def _data_dir_check(data_dir: os.PathLike[str], min_free_mb: int) -> str:
    """Writable (a probe file written, synced and removed) and with free space to download."""
    probe = os.path.join(data_dir, f".readyz-{uuid.uuid4().hex}")
    try:
        with open(probe, "wb") as handle:
            handle.write(b"ok")
            handle.flush()
            os.fsync(handle.fileno())
        os.unlink(probe)
    except OSError as exc:
        kind = disk_error_kind(exc) or "error"
        return f"unavailable: data dir {kind} ({exc.strerror})"
    free_mb = shutil.disk_usage(data_dir).free // 1024**2
    if free_mb < min_free_mb:
        return f"unavailable: disk full: {free_mb} MiB free in the data dir, below {min_free_mb}"
    return "ok"


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
