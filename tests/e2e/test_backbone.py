"""The whole product path on real parts: MLflow server -> webhook -> queue -> scan -> alias.

Each test starts `gatekeeper serve` / `gatekeeper worker` as processes, as a user does, against
the session's real `mlflow server` and a real SQLite file or PostgreSQL database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sqlalchemy import func, select

from demo.models import log_clean_model, log_malicious_model
from service.store.db import transaction
from service.store.tables import AuditEvent, GateRun
from tests.conftest import BOTH_DATABASES
from tests.helpers import (
    WEBHOOK_SECRET,
    GatekeeperProcess,
    MlflowServer,
    unique_name,
    wait_for,
)

ALIAS = "production-ready"


@pytest.fixture
def processes() -> Iterator[list[GatekeeperProcess]]:
    started: list[GatekeeperProcess] = []
    yield started
    for process in started:
        process.stop()


def _tags(client: MlflowClient, name: str, version: int) -> dict[str, str]:
    return client.get_model_version(name, str(version)).tags


def _final_status(client: MlflowClient, name: str, version: int) -> str | None:
    status = _tags(client, name, version).get("gatekeeper.status")
    return status if status in ("passed", "failed", "error") else None


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return client.get_registered_model(name).aliases


def _alias_sets(database_url: str, target: str) -> int:
    with transaction(database_url) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "alias.set", AuditEvent.target == target)
            )
            or 0
        )


@BOTH_DATABASES
def test_webhook_clean_model_promoted_malicious_blocked_payload_never_runs(
    mlflow_server: MlflowServer,
    database_url: str,
    tmp_path: Path,
    processes: list[GatekeeperProcess],
) -> None:
    prefix = unique_name("e2e")
    gk = GatekeeperProcess(
        data_dir=tmp_path / "gk", database_url=database_url,
        tracking_uri=mlflow_server.url, models=f"{prefix}-*",
    )  # fmt: skip
    processes.append(gk.start())
    client = MlflowClient(mlflow_server.url)
    webhook = client.create_webhook(
        name=prefix,
        url=f"{gk.url}/webhooks/mlflow",
        events=["model_version.created"],
        secret=WEBHOOK_SECRET,
    )
    try:
        time.sleep(2)  # the server caches its webhook list (MLFLOW_WEBHOOK_CACHE_TTL=1 here)
        clean, bad = f"{prefix}-clean", f"{prefix}-bad"
        marker = tmp_path / "PAYLOAD-RAN"
        clean_version = log_clean_model(mlflow_server.url, clean)
        bad_version = log_malicious_model(mlflow_server.url, bad, marker)

        wait_for(lambda: _final_status(client, clean, clean_version), 60, "clean decision")
        wait_for(lambda: _final_status(client, bad, bad_version), 60, "malicious decision")

        clean_tags = _tags(client, clean, clean_version)
        assert clean_tags["gatekeeper.status"] == "passed"
        assert clean_tags["gatekeeper.gate.security"] == "pass"
        # issue 21 (9): a security-only pass says which gates it does not cover
        for gate in ("performance", "fairness", "robustness", "drift"):
            assert clean_tags[f"gatekeeper.gate.{gate}"] == "not_configured", gate
        assert len(clean_tags["gatekeeper.artifact_digest"]) == 64
        assert clean_tags["gatekeeper.report_url"].startswith(f"{gk.url}/runs/")
        wait_for(lambda: _aliases(client, clean).get(ALIAS) == str(clean_version), 30, "alias")

        bad_tags = _tags(client, bad, bad_version)
        assert bad_tags["gatekeeper.status"] == "failed"
        assert bad_tags["gatekeeper.gate.security"] == "fail"
        assert "system" in bad_tags["gatekeeper.summary"]
        assert bad_tags["gatekeeper.finding"].startswith("CRITICAL SEC-PICKLE-001 model.pkl")
        assert clean_tags["gatekeeper.finding"] == "none"
        assert ALIAS not in _aliases(client, bad)
        assert not marker.exists(), "the malicious pickle was loaded"

        runs = gk.api("GET", f"/api/v1/models/{bad}/versions/{bad_version}/runs").json()
        [run] = runs["data"]
        assert run["trigger"] == "webhook", "the run must come from the webhook, not the poller"
        security, *unconfigured = run["gates"]
        assert security["gate"] == "security" and security["status"] == "fail"
        assert [(g["gate"], g["status"]) for g in unconfigured] == [
            (gate, "not_configured") for gate in ("performance", "fairness", "robustness", "drift")
        ]
        assert unconfigured[0]["message"] == (
            "not configured: no data.evaluation and no gates.performance"
        )
        top = security["findings"][0]
        assert (top["severity"], top["rule_id"], top["file"]) == (
            "CRITICAL",
            "SEC-PICKLE-001",
            "model.pkl",
        )
        assert top["evidence"]["callable"] == "os.system"
        report = gk.api("GET", f"/runs/{run['id']}")
        assert report.status_code == 200 and "CRITICAL" in report.text
        assert "<td>robustness</td><td class='not_configured'>not configured</td>" in report.text
    finally:
        client.delete_webhook(webhook.webhook_id)


def test_versions_registered_while_down_are_checked_after_restart(
    mlflow_server: MlflowServer,
    tmp_path: Path,
    processes: list[GatekeeperProcess],
) -> None:
    prefix = unique_name("e2e-down")
    database_url = f"sqlite:///{tmp_path / 'gatekeeper.db'}"
    first = GatekeeperProcess(
        data_dir=tmp_path / "gk", database_url=database_url,
        tracking_uri=mlflow_server.url, models=f"{prefix}-*",
    )  # fmt: skip
    processes.append(first.start())
    first.stop()  # the gatekeeper is down; no webhook could reach it

    client = MlflowClient(mlflow_server.url)
    name = f"{prefix}-model"
    versions = [log_clean_model(mlflow_server.url, name) for _ in range(2)]

    second = GatekeeperProcess(
        data_dir=tmp_path / "gk", database_url=database_url,
        tracking_uri=mlflow_server.url, models=f"{prefix}-*",
    )  # fmt: skip
    processes.append(second.start())
    for version in versions:
        wait_for(lambda v=version: _final_status(client, name, v), 60, f"v{version} decision")
        runs = second.api("GET", f"/api/v1/models/{name}/versions/{version}/runs").json()
        assert [r["trigger"] for r in runs["data"]] == ["poller"]
        assert runs["data"][0]["status"] == "passed"
    assert _aliases(client, name)[ALIAS] == str(max(versions))


@pytest.mark.parametrize("fresh_database_url", ["postgresql"], indirect=True)
def test_worker_killed_mid_run_is_finished_by_another_after_lease_expiry(
    mlflow_server: MlflowServer,
    database_url: str,
    tmp_path: Path,
    processes: list[GatekeeperProcess],
) -> None:
    name = unique_name("e2e-kill")
    # A 64 MiB shard makes the run long enough to be caught in the middle.
    version = log_clean_model(mlflow_server.url, name, extra_bytes=64 * 1024 * 1024)
    lease_env = {"GATEKEEPER_LEASE_S": "4"}
    api = GatekeeperProcess(
        data_dir=tmp_path / "api", database_url=database_url, tracking_uri=mlflow_server.url,
        models=name, extra_args=("--no-worker", "--no-poller"), env=lease_env,
    )  # fmt: skip
    processes.append(api.start())
    run_id = api.api("POST", f"/api/v1/models/{name}/versions/{version}/runs").json()["id"]

    def run_row() -> GateRun:
        with transaction(database_url) as session:
            run = session.get(GateRun, run_id)
            assert run is not None
            return run

    doomed = GatekeeperProcess(
        data_dir=tmp_path / "w1", database_url=database_url, tracking_uri=mlflow_server.url,
        models=name, command="worker", env=lease_env,
    )  # fmt: skip
    processes.append(doomed.start())
    wait_for(lambda: run_row().status == "running", 60, "worker 1 to claim", interval=0.02)
    doomed.kill()
    killed = run_row()
    assert killed.status == "running", "worker 1 finished before it could be killed"
    assert killed.attempt == 1 and killed.lease_expires_at is not None

    rescuer = GatekeeperProcess(
        data_dir=tmp_path / "w2", database_url=database_url, tracking_uri=mlflow_server.url,
        models=name, command="worker", env=lease_env,
    )  # fmt: skip
    processes.append(rescuer.start())
    wait_for(lambda: run_row().published_at is not None, 90, "worker 2 to finish the run")
    finished = run_row()
    assert finished.status == "passed"
    assert finished.attempt == 2
    assert finished.started_at is not None and finished.finished_at is not None
    assert finished.finished_at >= killed.lease_expires_at
    client = MlflowClient(mlflow_server.url)
    assert _aliases(client, name)[ALIAS] == str(version)
    assert _alias_sets(database_url, f"{name}/{version}") == 1


def test_alias_only_moves_forward(
    mlflow_server: MlflowServer,
    tmp_path: Path,
    processes: list[GatekeeperProcess],
) -> None:
    name = unique_name("e2e-forward")
    database_url = f"sqlite:///{tmp_path / 'gatekeeper.db'}"
    # models="none": only the manual API starts runs here, so the order is ours to choose.
    gk = GatekeeperProcess(
        data_dir=tmp_path / "gk", database_url=database_url,
        tracking_uri=mlflow_server.url, models="none",
    )  # fmt: skip
    processes.append(gk.start())
    v1, v2, v3 = (log_clean_model(mlflow_server.url, name) for _ in range(3))
    client = MlflowClient(mlflow_server.url)

    def check(version: int) -> dict:
        run = gk.api("POST", f"/api/v1/models/{name}/versions/{version}/runs").json()

        def done() -> dict | None:
            body = gk.api("GET", f"/api/v1/runs/{run['id']}").json()
            return body if body["published_at"] else None

        return wait_for(done, 60, f"v{version} run")

    assert check(v3)["status"] == "passed"
    assert _aliases(client, name)[ALIAS] == str(v3)
    assert check(v2)["status"] == "passed"
    assert _aliases(client, name)[ALIAS] == str(v3), "an older pass took the alias back"
    assert _tags(client, name, v2)["gatekeeper.status"] == "passed"
    with transaction(database_url) as session:
        kept = session.scalars(select(AuditEvent).where(AuditEvent.action == "alias.kept")).one()
        assert kept.target == f"{name}/{v2}"
    assert v1 < v2 < v3
