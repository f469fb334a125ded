"""FastAPI app factory. Background worker and poller threads live in the app's lifespan."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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

    app = FastAPI(
        title="mlflow-gatekeeper",
        summary="Decides which MLflow model versions may reach production.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    for module in (webhooks, runs, waivers, signatures, incidents, health, pages, signin):
        app.include_router(module.router)
    _install_error_handlers(app)
    return app


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
        return JSONResponse(
            {"error": "ValidationError", "detail": str(exc.errors())[:2000]}, status_code=422
        )
