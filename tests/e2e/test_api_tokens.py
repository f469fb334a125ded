"""Every route answers a token made by `gatekeeper token create` (issue 21, item 2).

The regression: on SQLite (the default and the demo) every transaction took the write lock
(`BEGIN IMMEDIATE`), even the read that looked the token up, and the request held it while the
quarantine code opened a transaction of its own: `POST /api/v1/incidents` and its close waited
for a lock their own request held, and answered 503 after 30 s, every time. The bootstrap admin
token never touches the database, so only tokens from `gatekeeper token create` showed it.

Here a real `gatekeeper serve` (with its worker) is driven through every route with the least
role each allows, on SQLite and on PostgreSQL, and each answer must be right and prompt.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from demo.models import log_clean_model
from tests.conftest import migrated_database
from tests.helpers import (
    GatekeeperProcess,
    MlflowServer,
    create_api_token,
    tail,
    unique_name,
    wait_for,
)

# A lock wait ends after 30 s (busy_timeout): that is the failure. Every answer here comes in
# well under it, with room for a loaded machine (a read takes milliseconds when idle).
PROMPT_S = 15.0
PREFIX = "tokens"


@dataclass
class Site:
    gk: GatekeeperProcess
    database_url: str
    tokens: dict[str, str]
    model: str
    version: int
    answers: list[tuple[str, int, float]] = field(default_factory=list)

    def call(self, role: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request as a holder of `role` (None: anonymous), timed and remembered."""
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        started = time.monotonic()
        answer = httpx.request(
            method, f"{self.gk.url}{path}", headers=headers, timeout=60, **kwargs
        )
        self.answers.append(
            (f"{role} {method} {path}", answer.status_code, time.monotonic() - started)
        )
        return answer


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest,
    mlflow_server: MlflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    root = tmp_path_factory.mktemp(f"tokens-{request.param}")
    with migrated_database(request.param, root) as url:
        name = unique_name(PREFIX)
        version = log_clean_model(mlflow_server.url, name)
        gk = GatekeeperProcess(
            data_dir=root / "gk", database_url=url, tracking_uri=mlflow_server.url,
            models=f"{PREFIX}-*",
        )  # fmt: skip
        gk.start()
        # as `gatekeeper token create --role ROLE` makes them
        roles = ("viewer", "operator", "approver")
        tokens = {role: create_api_token(url, role) for role in roles}
        try:
            yield Site(gk, url, tokens, name, version)
        finally:
            gk.stop()


def _slow_or_wrong(site: Site, expected: dict[str, int]) -> list[str]:
    seen = {what: (status, took) for what, status, took in site.answers}
    return [
        f"{what}: {seen[what][0]} after {seen[what][1]:.1f}s (expected {status}, < {PROMPT_S}s)"
        for what, status in expected.items()
        if seen[what][0] != status or seen[what][1] >= PROMPT_S
    ]


def test_every_route_answers_a_created_token_promptly(site: Site) -> None:
    model, version = site.model, site.version
    versions = f"/api/v1/models/{model}/versions/{version}"
    expected: dict[str, int] = {}

    def step(role: str | None, method: str, path: str, status: int, **kwargs: Any) -> Any:
        answer = site.call(role, method, path, **kwargs)
        expected[f"{role} {method} {path}"] = status
        return (
            answer.json()
            if answer.status_code == status and "json" in answer.headers.get("content-type", "")
            else None
        )

    # operator: a manual run, decided by the worker and read back by a viewer
    run = step("operator", "POST", f"{versions}/runs", 202)
    assert run is not None, _slow_or_wrong(site, expected)
    wait_for(
        lambda: site.call("viewer", "GET", f"/api/v1/runs/{run['id']}").json()["published_at"],
        180, f"the run to be decided\n{tail(site.gk.log)}",
    )  # fmt: skip
    step("viewer", "GET", f"/api/v1/runs/{run['id']}", 200)
    step("viewer", "GET", f"{versions}/runs", 200)
    step(None, "GET", "/api/v1/keys/public", 200)
    step("viewer", "GET", f"{versions}/signature", 200)
    step("viewer", "GET", f"{versions}/status", 200, params={"nonce": uuid.uuid4().hex})
    step("viewer", "GET", "/api/v1/revocations", 200)
    step("viewer", "GET", "/api/v1/lineage", 200, params={"dataset": "s3://nowhere/x.csv"})

    # approver: a waiver granted, listed and revoked
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    waiver = step("approver", "POST", "/api/v1/waivers", 201, json={
        "model": model, "version": version, "gate": "fairness", "reason": "JIRA-7 accepted",
        "expires_at": expires,
    })  # fmt: skip
    step("viewer", "GET", "/api/v1/waivers", 200, params={"model": model})
    if waiver is not None:
        step("approver", "DELETE", f"/api/v1/waivers/{waiver['id']}", 200)

    # approver: the version quarantined and released
    incident = step("approver", "POST", "/api/v1/incidents", 201, json={
        "model": model, "version": version, "reason": "trained on leaked data",
    })  # fmt: skip
    step("viewer", "GET", "/api/v1/incidents", 200)
    if incident is not None:
        step("approver", "POST", f"/api/v1/incidents/{incident['id']}/close", 200)

    # the report pages and the sign-in form, with the same viewer token
    step("viewer", "GET", "/", 200)
    step("viewer", "GET", f"/runs/{run['id']}", 200)
    step("viewer", "GET", f"/runs/{run['id']}/reports/security", 404)  # the scan has no report
    step(None, "POST", "/signin", 303, data={"token": site.tokens["viewer"], "next": "/"})
    step(None, "POST", "/signout", 303)

    assert _slow_or_wrong(site, expected) == []
    # the quarantine happened, by the approver's token, and was released
    [record] = site.call("viewer", "GET", "/api/v1/incidents").json()["data"]
    assert (record["model"], record["version"], record["open"]) == (model, version, False)
    assert record["opened_by"].startswith("approver-")
    assert record["closed_by"] == record["opened_by"]


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [
        ("viewer", "POST", "/api/v1/models/{model}/versions/1/runs"),
        ("operator", "POST", "/api/v1/waivers"),
        ("operator", "DELETE", "/api/v1/waivers/00000000-0000-0000-0000-000000000000"),
        ("operator", "POST", "/api/v1/incidents"),
        ("operator", "POST", "/api/v1/incidents/00000000-0000-0000-0000-000000000000/close"),
    ],
)
def test_a_role_below_the_route_is_refused_promptly(
    site: Site, role: str, method: str, path: str
) -> None:
    answer = site.call(role, method, path.format(model=site.model))
    what, status, took = site.answers[-1]
    assert (status, took < PROMPT_S) == (403, True), (what, took, answer.text)
    assert answer.json()["error"] == "Forbidden"
