"""The README's interfaces are the product's: every setting, tag, command and route it names
exists, and every one that exists is named. A new user copies them; a drifted one is a bug."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import typer
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from gates.base import GateResult, Status
from service.app import create_app
from service.cli import app as cli_app
from service.config import Settings
from service.runs.version_tags import final_tags, running_tags
from service.store.tables import GateResultRow, GateRun

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
# read by the command line for the deploy job's side or the log, not part of Settings
CLIENT_SIDE = {"GATEKEEPER_TOKEN", "GATEKEEPER_KEY_FINGERPRINT", "GATEKEEPER_LOG_LEVEL"}
# FastAPI's own documentation routes
FRAMEWORK_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _section(title: str) -> str:
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def test_every_setting_is_documented_and_every_documented_variable_exists() -> None:
    documented = set(re.findall(r"`(GATEKEEPER_[A-Z0-9_]+)`", _section("Configuration")))
    settings = {f"GATEKEEPER_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from the README's table"
    assert documented - settings - CLIENT_SIDE == set(), "documented variables nothing reads"


def test_every_tag_the_gatekeeper_writes_is_documented_and_no_other() -> None:
    run = GateRun(id="r", model_name="m", model_version=1, status="passed", policy_digest="p")
    run.results.append(GateResultRow(gate="security", status="pass", findings=[]))
    written = set(final_tags(Settings(), run, "runs:/x/sig")) | set(running_tags(Settings(), "r"))
    written = {re.sub(r"^gatekeeper\.gate\..*", "gatekeeper.gate.<gate>", t) for t in written}
    documented = set(
        re.findall(r"`(gatekeeper\.[a-z_]+(?:\.<gate>)?)`", _section("MLflow contract"))
    )
    assert written - documented == set(), "tags written but not documented"
    assert documented - written == set(), "documented tags never written"
    assert GateResult("security", Status.PASS)  # the gate results the tags are made from


def _commands(group: typer.Typer) -> set[str]:
    root = typer.main.get_command(group)
    found = set()
    for name, command in getattr(root, "commands", {}).items():
        subcommands = getattr(command, "commands", None)
        found |= {f"{name} {sub}" for sub in subcommands} if subcommands else {name}
    return found


def test_every_command_is_in_the_commands_table_and_every_row_exists() -> None:
    rows = re.findall(r"^\| `gatekeeper ([a-z]+(?: [a-z]+)?)", _section("Commands"), re.MULTILINE)
    assert _commands(cli_app) == set(rows)


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every endpoint, through the routers FastAPI includes lazily (`_IncludedRouter`)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def _normalised(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_route_is_in_the_http_table_and_every_row_exists() -> None:
    app = create_app(Settings(), tracking_uri="http://127.0.0.1:1", run_worker=False,
                     run_poller=False)  # fmt: skip
    served = {
        f"{method} {_normalised(route.path)}"
        for route in _api_routes(app.routes)
        if route.path not in FRAMEWORK_ROUTES
        for method in route.methods
        if method != "HEAD"
    }
    section = _section("HTTP API")
    documented = {
        f"{method} {_normalised(path)}"
        for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?\[]*)", section)
        if path not in FRAMEWORK_ROUTES
    }
    assert served - documented == set(), "routes missing from the README's table"
    assert documented - served == set(), "documented routes the service does not serve"
