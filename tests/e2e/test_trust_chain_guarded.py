"""The trust chain where the guard must act on its own: the poller every second, stored files
re-hashed every 3 seconds (see test_trust_chain.py for the rest of issue 20's attacks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from demo.models import log_clean_model, log_malicious_model
from tests.e2e.trust_setup import (
    ALIAS,
    Setup,
    audit_rows,
    fake_secrets,
    holder,
    in_seconds,
    log_model_dir,
    start_gatekeeper,
    status_tag,
    tamper_events,
    waive,
)
from tests.helpers import MlflowServer, flip_one_byte, stored_artifact, unique_name, wait_for

PREFIX = unique_name("trust-guard")


@pytest.fixture(scope="module")
def guarded(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    env = {"GATEKEEPER_POLL_INTERVAL_S": "1", "GATEKEEPER_REVERIFY_INTERVAL_S": "3"}
    root = tmp_path_factory.mktemp("trust-guarded")
    setup = start_gatekeeper(mlflow_server, root, PREFIX, env)
    yield setup
    setup.gk.stop()


# -- 4. the guard never stands down --------------------------------------------------------


def test_deleting_a_version_mid_run_does_not_switch_the_guard_off(
    guarded: Setup, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    client = MlflowClient(mlflow_server.url)
    name = f"{PREFIX}-deleted"
    good = log_clean_model(mlflow_server.url, name)
    assert guarded.gk.run_version(name, good)["status"] == "passed"
    bad = log_malicious_model(mlflow_server.url, name, tmp_path / "NEVER")
    assert guarded.gk.run_version(name, bad)["status"] == "failed"

    doomed = log_clean_model(mlflow_server.url, name, extra_bytes=64)
    queued = guarded.gk.api("POST", f"/api/v1/models/{name}/versions/{doomed}/runs").json()
    client.delete_model_version(name, str(doomed))  # while its run is queued or in flight

    def ended() -> dict[str, Any] | None:
        body: dict[str, Any] = guarded.gk.api("GET", f"/api/v1/runs/{queued['id']}").json()
        return body if body["published_at"] else None

    run = wait_for(ended, 60, "the deleted version's run ends and is settled")
    assert run["status"] in ("error", "passed"), run  # deleted before or after its gates

    client.set_registered_model_alias(name, ALIAS, str(bad))  # a registry user, afterwards
    client.set_model_version_tag(name, str(bad), "gatekeeper.status", "passed")
    wait_for(lambda: holder(mlflow_server, name) == str(good), 15, "the alias put back")
    wait_for(lambda: status_tag(mlflow_server, name, bad) == "tampered", 15, "forged tag rewritten")
    assert audit_rows(guarded, "version.deleted", f"{name}/{doomed}")  # recorded, not skipped
    assert not (tmp_path / "NEVER").exists()


# -- 9. waivers bound to content and time ------------------------------------------------------


def test_when_a_waiver_ends_what_it_let_through_loses_the_alias_and_the_signature(
    guarded: Setup, mlflow_server: MlflowServer
) -> None:
    name = f"{PREFIX}-waiver"
    good = log_clean_model(mlflow_server.url, name)
    assert guarded.gk.run_version(name, good)["status"] == "passed"

    def with_fixture_key(model_dir: Path) -> None:
        (model_dir / "fixtures.txt").write_text(fake_secrets(1, seed=1))

    leaky = log_model_dir(mlflow_server, name, with_fixture_key)
    assert guarded.gk.run_version(name, leaky)["status"] == "failed"
    waiver = waive(guarded, {
        "model": name, "version": leaky, "rule_id": "SEC-SECRET-001",
        "reason": "rotated key, JIRA-7", "expires_at": in_seconds(20),
    })  # fmt: skip
    waived = guarded.gk.run_version(name, leaky)
    assert waived["status"] == "waived", waived["decision"]
    assert holder(mlflow_server, name) == str(leaky)
    assert guarded.deployer.verify(mlflow_server, f"models:/{name}@{ALIAS}").returncode == 0

    wait_for(lambda: holder(mlflow_server, name) == str(good), 60, "the alias back on v1")
    assert status_tag(mlflow_server, name, leaky) == "failed"
    [redecided] = audit_rows(guarded, "run.redecided", f"{name}/{leaky}")
    assert redecided["waiver_id"] == waiver["id"] and redecided["status"] == "failed"
    after = guarded.deployer.verify(mlflow_server, f"models:/{name}/{leaky}")
    assert after.returncode == 1, after.stderr
    assert f"is failed (waiver {waiver['id']} ended)" in after.stderr


def test_scheduled_reverification_covers_versions_that_do_not_hold_the_alias(
    guarded: Setup, mlflow_server: MlflowServer
) -> None:
    name = f"{PREFIX}-reverify"
    older = log_clean_model(mlflow_server.url, name)
    newer = log_clean_model(mlflow_server.url, name, extra_bytes=16)
    assert guarded.gk.run_version(name, older)["status"] == "passed"
    assert guarded.gk.run_version(name, newer)["status"] == "passed"
    flip_one_byte(stored_artifact(mlflow_server, name, older, "model.pkl"))
    wait_for(lambda: status_tag(mlflow_server, name, older) == "tampered", 30, "v1 found changed")
    assert holder(mlflow_server, name) == str(newer)
    [event] = [e for e in tamper_events(guarded, name) if e[0] == "artifact"]
    assert event[1] == older and event[2]["how"] == "scheduled re-verification"
