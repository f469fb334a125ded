"""A refused webhook delivery is seen (issue 21, item 10).

The regression: after the webhook secret was rotated on one side only, every delivery was
refused with 401 and nothing said so: no log line, no metric. The poller brought the versions
in 30 s late and nobody knew why. Now each refusal is one warning line naming the delivery and
a reason from a small fixed set (never the body, the signature or the secret), and is counted
in `gatekeeper_webhook_deliveries_total{outcome="rejected",reason=...}`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import migrated_database
from tests.helpers import (
    WEBHOOK_SECRET,
    GatekeeperProcess,
    MlflowServer,
    signed_webhook_headers,
    unique_name,
    version_created_body,
    wait_for,
)


@pytest.fixture(scope="module")
def gk(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatekeeperProcess]:
    root = tmp_path_factory.mktemp("webhook-rejections")
    with migrated_database("sqlite", root) as url:
        process = GatekeeperProcess.api_only(
            data_dir=root, database_url=url, tracking_uri=mlflow_server.url,
            models="rejections-*",
        ).start()  # fmt: skip
        yield process
        process.stop()


def _rejected(gk: GatekeeperProcess, reason: str) -> float:
    """The counter of refused deliveries for `reason`, as /metrics shows it (0 when absent)."""
    text = httpx.get(f"{gk.url}/metrics", timeout=30).text
    pattern = (
        r'^gatekeeper_webhook_deliveries_total\{(?=[^}]*outcome="rejected")'
        rf'(?=[^}}]*reason="{reason}")[^}}]*\}} ([0-9.e+]+)$'
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _log_lines_naming(gk: GatekeeperProcess, delivery_id: str) -> list[str]:
    return [line for line in gk.log.read_text().splitlines() if delivery_id in line]


def test_a_delivery_signed_with_a_rotated_secret_is_logged_and_counted(
    gk: GatekeeperProcess,
) -> None:
    old_secret = "the-secret-before-rotation-0123"
    body = version_created_body(unique_name("rejections"), 1)
    delivery_id = str(uuid.uuid4())
    headers = signed_webhook_headers(body, secret=old_secret, delivery_id=delivery_id)
    before = _rejected(gk, "bad_signature")

    answer = httpx.post(f"{gk.url}/webhooks/mlflow", content=body, headers=headers, timeout=30)

    assert answer.status_code == 401
    [line] = wait_for(lambda: _log_lines_naming(gk, delivery_id), 10, "the rejection's log line")
    assert "WARNING" in line and "rejected" in line and "reason=bad_signature" in line, line
    signature = headers["X-MLflow-Signature"]
    for secret in (signature, signature.removeprefix("v1,"), old_secret, WEBHOOK_SECRET):
        assert secret not in line
    assert body.decode() not in line and "model_version" not in line
    assert _rejected(gk, "bad_signature") == before + 1

    # a delivery signed with the right secret still goes through, counted by its outcome
    event = b'{"entity": "prompt", "action": "exploded", "data": {}}'
    accepted = httpx.post(
        f"{gk.url}/webhooks/mlflow",
        content=event,
        headers=signed_webhook_headers(event),
        timeout=30,
    )
    assert accepted.status_code == 202 and accepted.json()["outcome"] == "ignored"
    metrics = httpx.get(f"{gk.url}/metrics", timeout=30).text
    ignored = r'^gatekeeper_webhook_deliveries_total\{[^}]*outcome="ignored"[^}]*\} 1\.0$'
    assert re.search(ignored, metrics, re.MULTILINE), metrics


@pytest.mark.parametrize(
    ("reason", "status", "change"),
    [
        ("stale_timestamp", 401, {"timestamp": -3600}),
        ("missing_headers", 401, {"drop": "X-MLflow-Signature"}),
        ("malformed", 401, {"set": ("X-MLflow-Timestamp", "yesterday")}),
        ("malformed", 400, {"body": b"[1, 2]"}),
        ("too_large", 413, {"body": b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'}),
    ],
)
def test_each_kind_of_refusal_has_its_reason(
    gk: GatekeeperProcess, reason: str, status: int, change: dict[str, object]
) -> None:
    body = change.get("body", version_created_body(unique_name("rejections"), 1))
    assert isinstance(body, bytes)
    delivery_id = str(uuid.uuid4())
    offset = change.get("timestamp", 0)
    assert isinstance(offset, int)
    headers = signed_webhook_headers(
        body, delivery_id=delivery_id, timestamp=int(time.time()) + offset
    )
    if "drop" in change:
        del headers[str(change["drop"])]
    if "set" in change:
        name, value = change["set"]  # type: ignore[misc]
        headers[name] = value
    before = _rejected(gk, reason)

    answer = httpx.post(f"{gk.url}/webhooks/mlflow", content=body, headers=headers, timeout=30)

    assert answer.status_code == status, answer.text
    [line] = wait_for(lambda: _log_lines_naming(gk, delivery_id), 10, "the rejection's log line")
    assert f"reason={reason}" in line, line
    assert _rejected(gk, reason) == before + 1
