"""Outages, crashes and a failing disk, with real processes (issue 10).

Each test runs `gatekeeper serve` against a real MLflow server and a real database, breaks a
dependency (stops the MLflow server, stops PostgreSQL, kills the gatekeeper at a fault point,
fills or freezes the data dir) and then checks the invariants an operator relies on: every
version ends with one final status, nothing is left `running` or `queued`, the alias is only
on a version with a passing run, and there is exactly one `alias.set` audit row per move.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from sqlalchemy import select

from demo.models import log_clean_model
from service.mlflow.embedded import EmbeddedMlflow
from service.store.db import transaction
from service.store.tables import FINISHED_STATUSES, AuditEvent, GateRun, ModelPromotion, RunStatus
from tests.conftest import _create_pg_database
from tests.helpers import (
    GatekeeperProcess,
    MlflowServer,
    free_port,
    signed_webhook_headers,
    unique_name,
    version_created_body,
    wait_for,
)
from tests.postgres import WheelPostgres

ALIAS = "production-ready"
FAST_RETRIES = {
    "GATEKEEPER_RETRY_BACKOFF_S": "1",
    "GATEKEEPER_RETRY_MAX_DELAY_S": "3",
    "GATEKEEPER_POLL_INTERVAL_S": "2",
    "GATEKEEPER_LEASE_S": "6",
    # a run recorded but not published (its publisher killed) is taken over after this long;
    # the default 60 s is most of what the publisher-killed tests would wait
    "GATEKEEPER_PUBLISH_WINDOW_S": "10",
}


def _runs(url: str, name: str) -> list[GateRun]:
    with transaction(url) as session:
        return list(session.scalars(select(GateRun).where(GateRun.model_name == name)))


def _alias_sets(url: str, name: str) -> list[AuditEvent]:
    with transaction(url) as session:
        return list(
            session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "alias.set", AuditEvent.target.startswith(f"{name}/")
                )
            )
        )


def assert_invariants(url: str, client: MlflowClient, name: str, versions: list[int]) -> None:
    runs = _runs(url, name)
    assert not [r.id for r in runs if r.status in (RunStatus.QUEUED, RunStatus.RUNNING)]
    automatic = [r for r in runs if r.trigger != "manual"]
    for version in versions:
        finals = [r for r in automatic if r.model_version == version]
        assert len(finals) == 1, (version, [(r.id, r.status) for r in finals])
        assert finals[0].status in FINISHED_STATUSES and finals[0].published_at is not None
    holder = client.get_registered_model(name).aliases.get(ALIAS)
    if holder is not None:
        assert any(r.model_version == int(holder) and r.status == "passed" for r in runs)
    moves = [int(e.target.rsplit("/", 1)[1]) for e in _alias_sets(url, name)]
    assert len(moves) == len(set(moves)), f"more than one alias.set row for a move: {moves}"
    with transaction(url) as session:
        row = session.get(ModelPromotion, name)
    if holder is not None:
        assert row is not None and row.version == int(holder)
        assert int(holder) in moves


def _all_final(url: str, name: str, count: int) -> bool:
    runs = [r for r in _runs(url, name) if r.trigger != "manual"]
    return len(runs) == count and all(
        r.status in FINISHED_STATUSES and r.published_at for r in runs
    )


@pytest.fixture
def own_mlflow(tmp_path: Path) -> Iterator[EmbeddedMlflow]:
    server = EmbeddedMlflow(tmp_path / "mlflow", free_port(), workers=1, webhook_cache_ttl_s=1)
    server.start()
    yield server
    server.stop()


def test_mlflow_down_for_120_s_with_five_versions_in_flight(
    own_mlflow: EmbeddedMlflow, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'gk.db'}"
    name = unique_name("outage-mlflow")
    # Registered before the gatekeeper starts: its first poll queues all five at once, and
    # MLflow goes down as soon as they are queued, so at most one run has started by then.
    versions = [log_clean_model(own_mlflow.url, name) for _ in range(5)]
    gk = GatekeeperProcess(
        data_dir=tmp_path / "gk",
        database_url=url,
        tracking_uri=own_mlflow.url,
        models=f"{name}*",
        env=FAST_RETRIES,
    ).start(wait=False)
    try:
        wait_for(lambda: len(_runs(url, name)) == 5, 90, "five runs queued", 0.05)
        own_mlflow.stop()
        started_before_outage = [r.id for r in _runs(url, name) if r.finished_at is not None]
        assert len(started_before_outage) <= 1, "the runs finished before MLflow went down"
        time.sleep(120)
        assert httpx.get(f"{gk.url}/healthz", timeout=5).status_code == 200
        own_mlflow.start()
        wait_for(lambda: _all_final(url, name, 5), 240, "five decisions after the outage", 1)
        runs = _runs(url, name)
        assert sorted(r.model_version for r in runs) == versions
        assert all(r.status == "passed" for r in runs), [(r.id, r.error_message) for r in runs]
        assert all(r.attempt == 1 for r in runs), [r.attempt for r in runs]
        assert any(r.transient_failures for r in runs), "no run saw the outage"
        assert_invariants(url, MlflowClient(own_mlflow.url), name, versions)
    finally:
        gk.stop()


@pytest.mark.parametrize("fault", ["publish:after-intent", "publish:after-alias"])
def test_publisher_killed_mid_publish_converges_with_one_audit_row(
    mlflow_server: MlflowServer, tmp_path: Path, fault: str
) -> None:
    url = f"sqlite:///{tmp_path / 'gk.db'}"
    name = unique_name("outage-crash")
    common = {"data_dir": tmp_path / "gk", "database_url": url, "tracking_uri": mlflow_server.url}
    first = GatekeeperProcess(
        **common, models=f"{name}*", env={**FAST_RETRIES, "GATEKEEPER_FAULT_INJECT": fault}
    ).start()
    version = log_clean_model(mlflow_server.url, name)
    assert first.process is not None
    first.process.wait(timeout=120)  # the fault point ends it
    assert first.process.returncode != 0
    runs = _runs(url, name)
    assert len(runs) == 1 and runs[0].status == "passed" and runs[0].published_at is None
    assert len(_alias_sets(url, name)) == 1  # the intent was recorded before MLflow moved
    second = GatekeeperProcess(**common, models=f"{name}*", env=FAST_RETRIES).start()
    try:
        wait_for(lambda: _all_final(url, name, 1), 60, "the run published after restart", 0.5)
        client = MlflowClient(mlflow_server.url)
        assert client.get_registered_model(name).aliases[ALIAS] == str(version)
        assert len(_alias_sets(url, name)) == 1
        assert_invariants(url, client, name, [version])
    finally:
        second.stop()


def test_postgres_down_15_s_during_recording(
    mlflow_server: MlflowServer, private_postgres: WheelPostgres, tmp_path: Path
) -> None:
    postgres = private_postgres
    _, url = _create_pg_database(postgres)
    name = unique_name("outage-pg")
    gk = GatekeeperProcess(
        data_dir=tmp_path / "gk",
        database_url=url,
        tracking_uri=mlflow_server.url,
        models=f"{name}*",
        env=FAST_RETRIES,
    ).start()
    try:
        first = log_clean_model(mlflow_server.url, name)
        wait_for(lambda: any(r.status == "running" for r in _runs(url, name)), 60, "a running run")
        postgres.stop()
        try:
            second = log_clean_model(mlflow_server.url, name)
            body = version_created_body(name, second)
            answer = httpx.post(
                f"{gk.url}/webhooks/mlflow",
                content=body,
                headers=signed_webhook_headers(body),
                timeout=30,
            )
            assert answer.status_code == 503, answer.text
            assert answer.headers.get("Retry-After")
            runs_api = gk.api("GET", f"/api/v1/models/{name}/versions/{first}/runs")
            assert runs_api.status_code == 503
            time.sleep(15)
        finally:
            postgres.start()
        wait_for(lambda: _all_final(url, name, 2), 120, "both versions decided", 1)
        runs = sorted(_runs(url, name), key=lambda r: r.model_version)
        assert [r.status for r in runs] == ["passed", "passed"], [r.error_message for r in runs]
        assert runs[0].attempt == 1, "the outage spent an attempt (lease expiry or a re-run)"
        assert_invariants(url, MlflowClient(mlflow_server.url), name, [first, second])
    finally:
        gk.stop()
        from service.store.db import engine_for

        engine_for(url).dispose()  # the private server and its database go with the fixture


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs as the data dir (the database lives elsewhere)."""
    mount = tmp_path / "data"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("failure", ["full", "read-only"])
def test_full_or_read_only_data_dir(
    mlflow_server: MlflowServer, tmp_path: Path, small_disk: Path, failure: str
) -> None:
    url = f"sqlite:///{tmp_path / 'gk.db'}"
    name = unique_name(f"outage-disk-{failure}")
    gk = GatekeeperProcess(
        data_dir=small_disk,
        database_url=url,
        tracking_uri=mlflow_server.url,
        models="none",
        env={**FAST_RETRIES, "GATEKEEPER_MIN_FREE_DISK_MB": "1"},
        log_dir=tmp_path,  # not on the disk that fails
    ).start()
    try:
        assert gk.api("GET", "/readyz").json()["checks"]["data_dir"] == "ok"
        if failure == "full":
            subprocess.run(
                ["dd", "if=/dev/zero", f"of={small_disk / 'filler'}", "bs=64k"],
                capture_output=True,
                check=False,
            )
            expected = "disk full"
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
            expected = "read-only"
        ready = gk.api("GET", "/readyz")
        assert ready.status_code == 503
        assert expected in ready.json()["checks"]["data_dir"], ready.json()
        version = log_clean_model(mlflow_server.url, name, extra_bytes=8 * 1024**2)
        run = gk.api("POST", f"/api/v1/models/{name}/versions/{version}/runs").json()

        def finished() -> dict[str, Any] | None:
            body = gk.api("GET", f"/api/v1/runs/{run['id']}").json()
            return body if body["finished_at"] else None

        body = wait_for(finished, 60, "the run to end", 0.5)
        assert body["status"] == "error"
        assert expected in body["error_message"], body["error_message"]
        assert "MLflow unavailable" not in body["error_message"]
        assert body["attempt"] == 1
    finally:
        gk.stop()
