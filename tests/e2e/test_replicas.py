"""Replicas on one PostgreSQL (issue 22): two `serve --no-worker` and three `gatekeeper worker`
processes, as Kubernetes runs them, against a real MLflow server.

Before, the per-model lock was a thread lock: both API processes' pollers republished the
same runs and both guards recorded one tamper act twice; and every process wrote its own
`GATEKEEPER_PUBLIC_URL` into `gatekeeper.report_url`, so each guard took the others' links for
tampering. Here each process has a different public URL (its own port), the pollers run every
second and take unpublished runs over after 2 s, so every race has many chances to happen.
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
from service.store.tables import FINISHED_STATUSES, AuditEvent, GateRun, TamperEvent
from tests.conftest import migrated_database
from tests.helpers import GatekeeperProcess, MlflowServer, unique_name, wait_for

ALIAS = "production-ready"
REPLICA_ENV = {
    "GATEKEEPER_POLL_INTERVAL_S": "1",
    "GATEKEEPER_PUBLISH_WINDOW_S": "2",
    "GATEKEEPER_REVERIFY_INTERVAL_S": "3600",
}


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    with migrated_database("postgresql", tmp_path) as url:
        yield url


def _runs(url: str, name: str) -> list[GateRun]:
    with transaction(url) as session:
        return list(session.scalars(select(GateRun).where(GateRun.model_name == name)))


def _tamper_events(url: str, name: str) -> list[tuple[str, int | None]]:
    with transaction(url) as session:
        rows = session.execute(
            select(TamperEvent.kind, TamperEvent.version).where(TamperEvent.model_name == name)
        )
        return sorted((kind, version) for kind, version in rows)


def _tamper_details(url: str, name: str) -> list[dict[str, object]]:
    with transaction(url) as session:
        rows = session.scalars(select(TamperEvent).where(TamperEvent.model_name == name))
        return [{"kind": r.kind, "version": r.version, "found": r.found} for r in rows]


def _kept_rows_per_run(url: str, name: str) -> int:
    """The most `alias.kept` audit rows any one run got (one per publish of a passing run
    that does not get the alias)."""
    with transaction(url) as session:
        counts = session.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "alias.kept", AuditEvent.target.startswith(f"{name}/"))
            .group_by(AuditEvent.target)
        )
        return max((int(c) for (c,) in counts), default=0)


def _published_lines(processes: list[GatekeeperProcess], run_id: str) -> int:
    return sum(
        p.log.read_text(errors="replace").count(f"run={run_id} published ") for p in processes
    )


def test_two_api_replicas_and_three_workers_act_once(
    mlflow_server: MlflowServer, postgres_url: str, tmp_path: Path
) -> None:
    url = postgres_url
    name = unique_name("replicas")
    common = {"database_url": url, "tracking_uri": mlflow_server.url, "models": f"{name}*"}
    apis = [
        GatekeeperProcess(
            data_dir=tmp_path / f"api{i}", extra_args=("--no-worker",), env=REPLICA_ENV, **common
        )
        for i in range(2)
    ]
    workers = [
        GatekeeperProcess(
            data_dir=tmp_path / f"worker{i}", command="worker", env=REPLICA_ENV, **common
        )
        for i in range(3)
    ]
    processes = apis + workers
    for process in processes:
        process.start()
    try:
        client = MlflowClient(mlflow_server.url)
        marker = tmp_path / "PAYLOAD-RAN"
        clean = [log_clean_model(mlflow_server.url, name) for _ in range(2)]
        bad = [log_malicious_model(mlflow_server.url, name, marker) for _ in range(2)]
        clean.append(log_clean_model(mlflow_server.url, name))
        versions = clean + bad

        def all_published() -> bool:
            runs = _runs(url, name)
            return len(runs) == len(versions) and all(
                r.status in FINISHED_STATUSES and r.published_at is not None for r in runs
            )

        wait_for(all_published, 240, "every version decided and published", 1)
        time.sleep(3)  # three more cycles of two pollers and guards: room for any double act
        runs = {r.model_version: r for r in _runs(url, name)}
        assert {v: runs[v].status for v in versions} == (
            {v: "passed" for v in clean} | {v: "failed" for v in bad}
        )
        # each run published once, by one process
        assert {v: _published_lines(processes, runs[v].id) for v in versions} == (
            {v: 1 for v in versions}
        )
        assert _kept_rows_per_run(url, name) <= 1
        # five processes, five public URLs, and no tampering recorded for any of them
        assert _tamper_events(url, name) == [], _tamper_details(url, name)
        # no tag write lost: what MLflow shows is what the record says, for every version
        for version in versions:
            tags = client.get_model_version(name, str(version)).tags
            assert tags["gatekeeper.run_id"] == runs[version].id, version
            assert tags["gatekeeper.status"] == runs[version].status, version
            assert tags["gatekeeper.report_url"].endswith(f"/runs/{runs[version].id}")
        assert client.get_registered_model(name).aliases[ALIAS] == str(max(clean))

        # two tamper acts, each recorded once however many guards see them
        client.set_registered_model_alias(name, ALIAS, str(bad[0]))
        client.set_model_version_tag(name, str(bad[1]), "gatekeeper.status", "passed")

        def put_back() -> bool:
            holder = client.get_registered_model(name).aliases.get(ALIAS)
            forged = client.get_model_version(name, str(bad[1])).tags["gatekeeper.status"]
            return holder == str(max(clean)) and forged == "tampered"

        wait_for(put_back, 60, "the alias and the forged tag put back", 0.5)
        time.sleep(3)
        assert _tamper_events(url, name) == [("alias", bad[0]), ("tag", bad[1])]
        assert not marker.exists(), "a malicious pickle was loaded"
        for process in processes:
            assert "MLflow refused" not in process.log.read_text(errors="replace"), process.log
    finally:
        for process in processes:
            process.stop()
