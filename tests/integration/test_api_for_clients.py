"""What API clients trip on (issue 21, item 11), against a real `gatekeeper serve`.

- `/docs` and `/redoc` load their scripts and styles from the gatekeeper itself: the machines
  it runs on often reach no CDN, and the pages were blank there.
- The OpenAPI document says how to authenticate (`securitySchemes`, bearer) and which errors
  each route answers, in the `{"error", "detail"}` shape the gatekeeper really sends.
- A 422 is a JSON list of errors a client can read, never a Python repr inside a string.
- Who may ask is decided before what was asked: a body from a client without the role is
  refused as 401 or 403, whatever is wrong with it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import migrated_database
from tests.helpers import ADMIN_TOKEN, GatekeeperProcess, MlflowServer, create_api_token

ANONYMOUS_ROUTES_UNDER_API = {("get", "/api/v1/keys/public")}


@pytest.fixture(scope="module")
def gk(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatekeeperProcess]:
    root = tmp_path_factory.mktemp("api-clients")
    with migrated_database("sqlite", root) as url:
        process = GatekeeperProcess.api_only(
            data_dir=root, database_url=url, tracking_uri=mlflow_server.url, models="clients-*"
        ).start()
        yield process
        process.stop()


def _assets(page: str) -> list[str]:
    """Every script src and stylesheet or icon href a page loads."""
    return re.findall(r"<(?:script|link)\b[^>]*?\b(?:src|href)=[\"']([^\"']+)[\"']", page)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_docs_load_everything_from_the_gatekeeper(gk: GatekeeperProcess, path: str) -> None:
    page = httpx.get(f"{gk.url}{path}", timeout=30)
    assert page.status_code == 200
    assets = _assets(page.text)
    assert assets, page.text
    for asset in assets:
        # a path of this site: no scheme, no host, not protocol-relative
        assert asset.startswith("/") and not asset.startswith("//"), asset
        loaded = httpx.get(f"{gk.url}{asset}", timeout=30)
        assert loaded.status_code == 200 and len(loaded.content) > 1000, asset
    scripts = [a for a in assets if a.endswith(".js")]
    assert scripts, assets  # the page is a script: without it, it is blank
    assert "https://" not in page.text and "http://" not in page.text
    assert httpx.get(f"{gk.url}/openapi.json", timeout=30).status_code == 200


def _api_operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        if path.startswith("/api/v1/"):
            for method, operation in item.items():
                yield method, path, operation


def test_openapi_says_how_to_authenticate_and_what_errors_come_back(gk: GatekeeperProcess) -> None:
    doc = httpx.get(f"{gk.url}/openapi.json", timeout=30).json()
    schemes = doc["components"]["securitySchemes"]
    [(name, scheme)] = schemes.items()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    schemas = doc["components"]["schemas"]
    assert set(schemas["ErrorRead"]["properties"]) == {"error", "detail"}

    checked = []
    for method, path, operation in _api_operations(doc):
        if (method, path) in ANONYMOUS_ROUTES_UNDER_API:
            assert "security" not in operation and "401" not in operation["responses"]
            continue
        assert operation["security"] == [{name: []}], (method, path)
        for status in ("401", "403", "503"):
            body = operation["responses"][status]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorRead"}, (method, path, status)
        checked.append((method, path))
    assert len(checked) >= 13, checked  # every route of the table in the README
    waiver_create = doc["paths"]["/api/v1/waivers"]["post"]["responses"]
    assert {"201", "400", "401", "403", "422", "503"} <= set(waiver_create)
    assert "404" in doc["paths"]["/api/v1/runs/{run_id}"]["get"]["responses"]
    # the 422 documented is the 422 sent: {"error": "ValidationError", "detail": [...]}
    ref = waiver_create["422"]["content"]["application/json"]["schema"]["$ref"]
    invalid = schemas[ref.rsplit("/", 1)[1]]
    assert invalid["properties"]["detail"]["type"] == "array"
    assert set(invalid["required"]) == {"error", "detail"}


def _waiver(**change: Any) -> dict[str, Any]:
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    return {"model": "clients-m", "version": 1, "gate": "fairness", "reason": "because",
            "expires_at": tomorrow, **change}  # fmt: skip


def test_a_422_is_a_json_list_of_what_is_wrong(gk: GatekeeperProcess) -> None:
    answer = gk.api("POST", "/api/v1/waivers", json=_waiver(gate="vibes", version=0))
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "ValidationError"
    assert isinstance(body["detail"], list) and len(body["detail"]) == 2, body
    by_field = {tuple(e["loc"]): e for e in body["detail"]}
    assert set(by_field) == {("body", "version"), ("body", "gate")}, body
    assert "gate must be one of" in by_field[("body", "gate")]["msg"]
    assert by_field[("body", "version")]["type"] == "greater_than_equal"

    path = gk.api("GET", "/api/v1/models/clients-m/versions/0/runs").json()
    assert path["error"] == "ValidationError"
    assert [e["loc"] for e in path["detail"]] == [["path", "version"]]
    broken = gk.api(
        "POST",
        "/api/v1/waivers",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    ).json()
    assert broken["error"] == "ValidationError" and broken["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/waivers", _waiver(gate="vibes")),
        ("/api/v1/waivers", {"nonsense": True}),
        ("/api/v1/incidents", {"reason": "x", "extra": 1}),
        ("/api/v1/incidents", []),
    ],
)
def test_who_may_ask_is_decided_before_what_was_asked(
    gk: GatekeeperProcess, path: str, body: Any
) -> None:
    def post(headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{gk.url}{path}", json=body, headers=headers, timeout=30)

    anonymous = post({})
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "Unauthorized")
    unknown = post({"Authorization": "Bearer gk_not-a-token"})
    assert (unknown.status_code, unknown.json()["error"]) == (401, "Unauthorized")
    viewer = create_api_token(gk.database_url, "viewer")
    refused = post({"Authorization": f"Bearer {viewer}"})
    assert (refused.status_code, refused.json()["error"]) == (403, "Forbidden"), refused.text
    approver = post({"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert approver.status_code == 422 and isinstance(approver.json()["detail"], list)
