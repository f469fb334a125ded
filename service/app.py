"""FastAPI app factory. Background worker and poller threads live in the app's lifespan.

`/docs` and `/redoc` load Swagger UI and ReDoc from the gatekeeper itself (the assets the
`fastapi-offline` package ships): the machines it runs on often reach no CDN.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import DBAPIError, OperationalError

from service.api import (
    health,
    incidents,
    pages,
    runs,
    signatures,
    signin,
    waivers,
    webhooks,
)
from service.api.schemas import ValidationErrorItem, ValidationErrorRead
from service.config import Settings
from service.errors import GatekeeperError
from service.mlflow.registry import Registry
from service.runs.poller import start_poller_thread
from service.runs.worker import SHUTDOWN_GRACE_S, start_worker_thread

log = logging.getLogger("gatekeeper.app")


def create_app(
    settings: Settings,
    *,
    tracking_uri: str,
    run_worker: bool = True,
    run_poller: bool = True,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    registry = Registry(tracking_uri)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        poller = start_poller_thread(settings, registry, stop) if run_poller else None
        worker = start_worker_thread(settings, registry, stop) if run_worker else None
        try:
            yield
        finally:
            stop.set()
            if poller is not None:
                poller.join(timeout=10)
            if worker is not None:
                worker.stop(grace_s=SHUTDOWN_GRACE_S)
            # Here, not after uvicorn.run returns: uvicorn re-raises SIGTERM once it has shut
            # down, which ends the process before any code after run() executes.
            if on_shutdown is not None:
                on_shutdown()

    app = FastAPIOffline(
        title="mlflow-gatekeeper",
        summary="Decides which MLflow model versions may reach production.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    for module in (webhooks, runs, waivers, signatures, incidents, health, pages, signin):
        app.include_router(module.router)
    _install_error_handlers(app)
    # FastAPI's documented way to adjust the generated document (one method, replaced)
    app.openapi = _openapi_with_our_422(app)  # type: ignore[method-assign]
    return app


def _openapi_with_our_422(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document, its 422 body the one `_validation_error` sends (FastAPI's own
    `HTTPValidationError` schema describes a different shape)."""

    generate = app.openapi  # FastAPI's own, which caches what it made in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            body = ValidationErrorRead.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            schemas.update(body.pop("$defs", {}))
            schemas["HTTPValidationError"] = body
            schemas.pop("ValidationError", None)  # FastAPI's item, now ValidationErrorItem
            app.openapi_schema = document
        return app.openapi_schema

    return openapi


def _install_error_handlers(app: FastAPI) -> None:
    """The one place domain errors become HTTP responses."""

    @app.exception_handler(GatekeeperError)
    async def _domain_error(_request: Request, exc: GatekeeperError) -> JSONResponse:
        headers = {"Retry-After": "5"} if exc.http_status == 503 else None
        return JSONResponse(
            {"error": type(exc).__name__, "detail": str(exc)},
            status_code=exc.http_status,
            headers=headers,
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database_down(_request: Request, exc: Exception) -> JSONResponse:
        # Never a 500: MLflow retries webhooks on 5xx and 429 only, and an operator's client
        # should know to come back. The delivery is not recorded; MLflow's retry or the poller
        # brings the version in once the database is back.
        log.warning("database unavailable: %s", type(exc).__name__)
        return JSONResponse(
            {"error": "DatabaseUnavailable", "detail": "the gatekeeper's database is unavailable"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        body = ValidationErrorRead(error="ValidationError", detail=_validation_items(exc))
        return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=422)


_MAX_VALIDATION_ERRORS = 50
_MAX_ECHOED_CHARS = 200


def _validation_items(exc: RequestValidationError) -> list[ValidationErrorItem]:
    """FastAPI's error objects (type, loc, msg, ctx) as JSON. The input is echoed only when it
    is a short scalar: a whole body (or a large value) is never sent back."""
    items = []
    for error in list(exc.errors())[:_MAX_VALIDATION_ERRORS]:
        ctx = error.get("ctx")
        items.append(
            ValidationErrorItem(
                type=str(error.get("type", "")),
                loc=[p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
                msg=str(error.get("msg", "")),
                input=_echoable(error.get("input")),
                ctx={k: _as_text(v) for k, v in ctx.items()} if isinstance(ctx, dict) else None,
            )
        )
    return items


def _as_text(value: Any) -> str | int | float | bool | None:
    """A `ctx` value (a limit, a pattern, the error a validator raised) as JSON."""
    echoed = _echoable(value)
    return echoed if echoed is not None or value is None else str(value)[:_MAX_ECHOED_CHARS]


def _echoable(value: Any) -> str | int | float | bool | None:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= _MAX_ECHOED_CHARS:
        return value
    return None
