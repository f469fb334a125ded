"""The registry guard on a real MLflow server: the gatekeeper's record is the truth.

Whoever may register a version may also move the alias, set tags and (with store access)
change the files. Each test does one of those as a registry user would, through MLflow's own
client, and checks that the gatekeeper puts the registry back, says so, and never fights its
own changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from sqlalchemy import func, select

from demo.models import log_clean_model, log_malicious_model
from service.config import Settings
from service.mlflow.fetch import fetch_version
from service.mlflow.registry import Registry
from service.runs.promotion import publish_run
from service.store.db import transaction
from service.store.tables import AuditEvent, GateRun, RunStatus, TamperEvent, Trigger, utcnow
from tests.helpers import (
    WEBHOOK_SECRET,
    GatekeeperProcess,
    MlflowServer,
    unique_name,
    wait_for,
)

ALIAS = "production-ready"
GUARD_EVENTS = [
    "model_version.created",
    "model_version_alias.created",
    "model_version_alias.deleted",
    "model_version_tag.set",
]


@pytest.fixture
def processes() -> Iterator[list[GatekeeperProcess]]:
    started: list[GatekeeperProcess] = []
    yield started
    for process in started:
        process.stop()


def _holder(client: MlflowClient, name: str) -> str | None:
    return client.get_registered_model(name).aliases.get(ALIAS)


def _status(client: MlflowClient, name: str, version: int) -> str | None:
    return client.get_model_version(name, str(version)).tags.get("gatekeeper.status")


def _count(url: str, action: str, name: str) -> int:
    with transaction(url) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == action, AuditEvent.target.startswith(f"{name}/"))
            )
            or 0
        )


def _webhook(
    client: MlflowClient, gk: GatekeeperProcess, name: str, events: list[str] = GUARD_EVENTS
) -> str:
    hook = client.create_webhook(
        name=name, url=f"{gk.url}/webhooks/mlflow", events=events, secret=WEBHOOK_SECRET
    )
    time.sleep(2)  # the server caches its webhook list (1 s here)
    return str(hook.webhook_id)


def test_an_alias_moved_by_hand_and_a_forged_status_tag_are_put_back_at_once(
    mlflow_server: MlflowServer, tmp_path: Path, processes: list[GatekeeperProcess]
) -> None:
    name = unique_name("guard-hook")
    url = f"sqlite:///{tmp_path / 'gk.db'}"
    gk = GatekeeperProcess(
        data_dir=tmp_path / "gk", database_url=url, tracking_uri=mlflow_server.url,
        models=f"{name}*",
    )  # fmt: skip
    processes.append(gk.start())
    client = MlflowClient(mlflow_server.url)
    hook = _webhook(client, gk, name)
    try:
        good = log_clean_model(mlflow_server.url, name)
        wait_for(lambda: _holder(client, name) == str(good), 60, "v1 promoted")
        bad = log_malicious_model(mlflow_server.url, name, tmp_path / "NEVER")
        wait_for(lambda: _status(client, name, bad) == "failed", 60, "v2 blocked")

        client.set_registered_model_alias(name, ALIAS, str(bad))  # a registry user
        moved_at = time.monotonic()
        # the poll interval is an hour here: a put-back within 30 s is the webhook's doing
        wait_for(lambda: _holder(client, name) == str(good), 30, "alias put back by the guard")
        assert time.monotonic() - moved_at < 30
        wait_for(lambda: _status(client, name, bad) == "tampered", 30, "offender tagged")
        assert _count(url, "tamper.alias", name) == 1

        client.set_model_version_tag(name, str(bad), "gatekeeper.status", "passed")
        wait_for(lambda: _status(client, name, bad) == "tampered", 5, "forged tag rewritten")
        client.set_model_version_tag(name, str(good), "gatekeeper.gate.security", "fail")
        wait_for(
            lambda: (
                client.get_model_version(name, str(good)).tags["gatekeeper.gate.security"] == "pass"
            ),
            5,
            "forged gate tag rewritten",
        )
        assert _count(url, "tamper.tag", name) >= 2
        metrics = gk.api("GET", "/metrics").text
        assert 'gatekeeper_tampering_total{kind="alias"} 1.0' in metrics
        assert not (tmp_path / "NEVER").exists()
    finally:
        client.delete_webhook(hook)


def test_with_webhooks_off_the_poller_puts_the_alias_back_within_one_interval(
    mlflow_server: MlflowServer, tmp_path: Path, processes: list[GatekeeperProcess]
) -> None:
    name = unique_name("guard-poll")
    url = f"sqlite:///{tmp_path / 'gk.db'}"
    gk = GatekeeperProcess(
        data_dir=tmp_path / "gk", database_url=url, tracking_uri=mlflow_server.url,
        models=f"{name}*", env={"GATEKEEPER_POLL_INTERVAL_S": "2"},
    )  # fmt: skip
    processes.append(gk.start())
    client = MlflowClient(mlflow_server.url)
    good = log_clean_model(mlflow_server.url, name)
    wait_for(lambda: _holder(client, name) == str(good), 60, "v1 promoted by the poller")
    bad = log_malicious_model(mlflow_server.url, name, tmp_path / "NEVER")
    wait_for(lambda: _status(client, name, bad) == "failed", 60, "v2 blocked")

    client.set_registered_model_alias(name, ALIAS, str(bad))
    wait_for(lambda: _holder(client, name) == str(good), 2 + 3, "alias back within a cycle")
    client.delete_registered_model_alias(name, ALIAS)
    wait_for(lambda: _holder(client, name) == str(good), 2 + 3, "deleted alias put back")
    assert _count(url, "tamper.alias", name) == 2


def test_fifty_promotions_in_a_row_cause_no_revert(
    mlflow_server: MlflowServer, tmp_path: Path, processes: list[GatekeeperProcess]
) -> None:
    """The gatekeeper publishes 50 passing versions one after another while its own guard
    hears every alias and tag event: no tamper event, no revert, one `alias.set` per move.
    (The 50 runs are recorded straight into the service's database as the worker records
    them; what is under test is the publisher and the guard together, not the gates.)"""
    name = unique_name("guard-fifty")
    url = f"sqlite:///{tmp_path / 'gk.db'}"
    # no worker: the runs below are the only ones decided; the guard hears every event
    gk = GatekeeperProcess(
        data_dir=tmp_path / "gk", database_url=url, tracking_uri=mlflow_server.url,
        models=f"{name}*", extra_args=("--no-worker",),
    )  # fmt: skip
    processes.append(gk.start())
    client = MlflowClient(mlflow_server.url)
    # the alias events: every move the publisher makes reaches the guard at once
    hook = _webhook(client, gk, name, [e for e in GUARD_EVENTS if "alias" in e])
    first = log_clean_model(mlflow_server.url, name)
    registered = client.get_model_version(name, str(first))
    settings = Settings(
        database_url=url, mlflow_tracking_uri=mlflow_server.url, public_url=gk.url,
        data_dir=tmp_path / "publisher",
    )  # fmt: skip
    registry = Registry(mlflow_server.url)
    # every version has the same files; the publisher re-hashes each before the alias moves
    digest = fetch_version(registry, name, first, tmp_path / "files").digest
    try:
        versions = [first] + [
            int(mlflow.register_model(registered.source, name, await_registration_for=0).version)
            for _ in range(49)
        ]
        for version in versions:
            with transaction(url) as session:
                run = GateRun(
                    model_name=name, model_version=version, trigger=Trigger.MANUAL,
                    status=RunStatus.PASSED, policy_digest="p", artifact_digest=digest,
                    decision={"status": "passed", "deny": [], "warn": [], "gates": {}},
                    finished_at=utcnow(),
                )  # fmt: skip
                session.add(run)
                session.flush()
                run_id = run.id
            publish_run(settings, registry, run_id)
            assert _holder(client, name) == str(version)
        time.sleep(3)  # the last events reach the guard
        assert _holder(client, name) == str(versions[-1])
        with transaction(url) as session:
            tampering = session.scalar(
                select(func.count()).select_from(TamperEvent).where(TamperEvent.model_name == name)
            )
        assert tampering == 0
        assert _count(url, "alias.set", name) == 50
        assert _count(url, "alias.removed", name) == 0
        assert all(_status(client, name, v) == "passed" for v in versions[-3:])
    finally:
        client.delete_webhook(hook)
