"""The HTTP doors of a real `gatekeeper serve` (no worker): webhook and runs API.

Bad input must never make a 500 or a run; duplicates of a webhook must collapse into one run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from demo.models import log_clean_model
from service.store.db import transaction
from service.store.tables import GateRun, WebhookDelivery
from tests.conftest import migrated_database
from tests.helpers import (
    GatekeeperProcess,
    MlflowServer,
    signed_webhook_headers,
    unique_name,
    version_created_body,
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gatekeeper(
    request: pytest.FixtureRequest,
    mlflow_server: MlflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatekeeperProcess]:
    data_dir = tmp_path_factory.mktemp(f"intake-{request.param}")
    with migrated_database(request.param, data_dir) as url:
        process = GatekeeperProcess.api_only(
            data_dir=data_dir, database_url=url, tracking_uri=mlflow_server.url,
            models="intake-*",
        ).start()  # fmt: skip
        yield process
        process.stop()


def _counts(gk: GatekeeperProcess, name: str) -> tuple[int, int]:
    with transaction(gk.database_url) as session:
        runs = session.scalar(
            select(func.count()).select_from(GateRun).where(GateRun.model_name == name)
        )
        deliveries = session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.model_name == name)
        )
    return int(runs or 0), int(deliveries or 0)


def _post(gk: GatekeeperProcess, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{gk.url}/webhooks/mlflow", content=body, headers=headers, timeout=30)


def test_bad_webhooks_are_refused_without_a_run(gatekeeper: GatekeeperProcess) -> None:
    name = unique_name("intake-bad")
    body = version_created_body(name, 1)
    good = signed_webhook_headers(body)
    cases = {
        "wrong secret": (body, signed_webhook_headers(body, secret="not-the-secret-0000")),
        "body altered": (body.replace(b"created", b"creatEd"), good),
        "stale timestamp": (body, signed_webhook_headers(body, timestamp=int(time.time()) - 301)),
        "future timestamp": (body, signed_webhook_headers(body, timestamp=int(time.time()) + 400)),
        "no signature": (body, {k: v for k, v in good.items() if k != "X-MLflow-Signature"}),
    }
    for label, (payload, headers) in cases.items():
        response = _post(gatekeeper, payload, headers)
        assert response.status_code == 401, (label, response.text)
        assert response.json()["error"] == "Unauthorized"

    not_json = b"{not json"
    assert _post(gatekeeper, not_json, signed_webhook_headers(not_json)).status_code == 400
    not_object = b"[1, 2]"
    assert _post(gatekeeper, not_object, signed_webhook_headers(not_object)).status_code == 400
    bad_version = json.dumps(
        {"entity": "model_version", "action": "created", "data": {"name": name, "version": "x"}}
    ).encode()
    assert _post(gatekeeper, bad_version, signed_webhook_headers(bad_version)).status_code == 400

    huge = b'{"entity": "model_version", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = _post(gatekeeper, huge, signed_webhook_headers(huge))
    assert response.status_code == 413, response.text

    assert _counts(gatekeeper, name) == (0, 0)


def test_unknown_event_is_accepted_and_ignored(gatekeeper: GatekeeperProcess) -> None:
    name = unique_name("intake-unknown")
    body = json.dumps(
        {"entity": "prompt", "action": "exploded", "data": {"name": name, "version": "1"}}
    ).encode()
    response = _post(gatekeeper, body, signed_webhook_headers(body))
    assert response.status_code == 202
    assert response.json()["outcome"] == "ignored"
    assert _counts(gatekeeper, name) == (0, 1)


def test_twenty_concurrent_deliveries_make_one_run(gatekeeper: GatekeeperProcess) -> None:
    name = unique_name("intake-dup")
    body = version_created_body(name, 1)
    same = signed_webhook_headers(body)  # MLflow's retries resend the same delivery

    def deliver(i: int) -> httpx.Response:
        headers = same if i % 2 == 0 else signed_webhook_headers(body)
        return _post(gatekeeper, body, headers)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(deliver, range(20)))
    assert [r.status_code for r in responses] == [202] * 20
    run_ids = {r.json().get("run_id") for r in responses} - {None}
    assert len(run_ids) == 1
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes.count("queued") == 1
    assert outcomes.count("duplicate") == 9  # the 10 copies of one delivery id: 1 kept
    assert _counts(gatekeeper, name) == (1, 11)


def test_runs_api_needs_a_token_with_the_right_role(gatekeeper: GatekeeperProcess) -> None:
    path = "/api/v1/models/intake-x/versions/1/runs"
    assert httpx.post(f"{gatekeeper.url}{path}", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer not-a-token"}
    assert httpx.post(f"{gatekeeper.url}{path}", headers=wrong, timeout=10).status_code == 401
    assert httpx.get(f"{gatekeeper.url}/api/v1/runs/x", timeout=10).status_code == 401


def test_viewer_cannot_start_a_run(gatekeeper: GatekeeperProcess) -> None:
    import subprocess

    token = subprocess.run(
        [gatekeeper.args[0], "token", "create", "--name", "dash", "--role", "viewer"],
        env=gatekeeper.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.post(
        f"{gatekeeper.url}/api/v1/models/intake-x/versions/1/runs", headers=headers, timeout=10
    )
    assert response.status_code == 403
    listing = httpx.get(
        f"{gatekeeper.url}/api/v1/models/intake-x/versions/1/runs", headers=headers, timeout=10
    )
    assert listing.status_code == 200 and listing.json() == {"data": [], "count": 0}


def test_manual_runs_are_new_each_time_and_readable(
    gatekeeper: GatekeeperProcess, mlflow_server: MlflowServer
) -> None:
    name = unique_name("intake-manual")
    version = log_clean_model(mlflow_server.url, name)
    path = f"/api/v1/models/{name}/versions/{version}/runs"
    first = gatekeeper.api("POST", path)
    second = gatekeeper.api("POST", path)
    assert first.status_code == second.status_code == 202, first.text
    assert first.json()["id"] != second.json()["id"]
    assert first.json()["trigger"] == "manual" and first.json()["status"] == "queued"
    detail = gatekeeper.api("GET", f"/api/v1/runs/{first.json()['id']}")
    assert detail.status_code == 200 and detail.json()["requested_by"] == "bootstrap-admin"
    listing = gatekeeper.api("GET", path).json()
    assert listing["count"] == 2

    missing = gatekeeper.api("POST", f"/api/v1/models/{name}/versions/999/runs")
    assert missing.status_code == 404
    assert gatekeeper.api("POST", f"/api/v1/models/{name}/versions/0/runs").status_code == 422
    assert gatekeeper.api("GET", "/api/v1/runs/no-such-run").status_code == 404


NON_ASCII_VALUES = [
    b"Bearer \xff\xfe\xfd",  # latin-1 bytes that are not UTF-8
    "Bearer tök€n".encode(),  # UTF-8 multi-byte
    b"Bearer \x80\x81",  # C1 range (legal on the wire, not ASCII)
    b"\xc3\xa9",  # no scheme at all
]


@pytest.mark.parametrize("value", NON_ASCII_VALUES)
def test_non_ascii_authorization_is_401_never_500(
    gatekeeper: GatekeeperProcess, value: bytes
) -> None:
    for method, path in (
        ("GET", "/api/v1/runs/00000000-0000-0000-0000-000000000000"),
        ("GET", "/api/v1/models/intake-x/versions/1/runs"),
        ("POST", "/api/v1/models/intake-x/versions/1/runs"),
    ):
        response = httpx.request(
            method, f"{gatekeeper.url}{path}", headers={"Authorization": value}, timeout=10
        )
        assert response.status_code == 401, (method, path, response.text)


@pytest.mark.parametrize(
    "header", ["X-MLflow-Signature", "X-MLflow-Delivery-Id", "X-MLflow-Timestamp"]
)
@pytest.mark.parametrize("value", [b"v1,\xff\xfe", "v1,ünïcödé".encode(), b"1700000000\xa0"])
def test_non_ascii_webhook_headers_are_401_never_500(
    gatekeeper: GatekeeperProcess, header: str, value: bytes
) -> None:
    body = version_created_body("intake-nonascii", 1)
    headers: dict[str, str | bytes] = dict(signed_webhook_headers(body))
    headers[header] = value
    response = httpx.post(
        f"{gatekeeper.url}/webhooks/mlflow", content=body, headers=headers, timeout=10
    )
    assert response.status_code == 401, (header, value, response.text)
    with transaction(gatekeeper.database_url) as session:
        made = session.scalar(
            select(func.count()).select_from(GateRun).where(GateRun.model_name == "intake-nonascii")
        )
    assert made == 0
