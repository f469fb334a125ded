"""The registry writers (guard, publisher) on an in-memory registry: each scenario of the
registry guard in milliseconds (issue 22). Real SQLite record, real guard code; only MLflow
is the fake of tests/fake_registry.py, which answers as the real adapter does."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from service.config import Settings
from service.mlflow.fetch import fetch_version
from service.runs.guard import guard_model
from service.runs.promotion import publish_run
from service.store.db import transaction
from service.store.migrate import upgrade_to_head
from service.store.tables import GateRun, TamperEvent, utcnow
from service.vocabulary import RunStatus, TagKey
from tests.fake_registry import FakeRegistry

ALIAS = "production-ready"
MODEL = "credit"


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file for the module; each test gets a copy (a migration per test
    would be most of this file's time)."""
    path = tmp_path_factory.mktemp("registry-sync") / "template.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def settings(migrated: Path, tmp_path: Path) -> Settings:
    database = tmp_path / "gatekeeper.db"
    shutil.copyfile(migrated, database)
    url = f"sqlite:///{database}"
    return Settings(database_url=url, data_dir=tmp_path, public_url="http://gk.test")


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


def _decided(
    settings: Settings, registry: FakeRegistry, status: RunStatus, content: bytes
) -> tuple[int, str]:
    """A version registered with `content`, its run recorded as `status` and published."""
    version = registry.register(MODEL, {"MLmodel": b"flavors: {}\n", "model.pkl": content})
    digest = fetch_version(registry, MODEL, version, settings.data_dir / f"fetch-{version}").digest
    with transaction(settings.resolved_database_url) as session:
        run = GateRun(
            model_name=MODEL, model_version=version, trigger="manual", status=status,
            policy_digest="p", artifact_digest=digest, finished_at=utcnow(),
            decision={"deny": [] if status == RunStatus.PASSED else ["security: unsafe"]},
        )  # fmt: skip
        session.add(run)
        session.flush()
        run_id = run.id
    publish_run(settings, registry, run_id)
    return version, run_id


def _good_then_bad(settings: Settings, registry: FakeRegistry) -> tuple[int, str, int]:
    """v1 passed (its run id too), v2 failed: both decided and published."""
    good, good_run = _decided(settings, registry, RunStatus.PASSED, b"good")
    bad, _ = _decided(settings, registry, RunStatus.FAILED, b"bad")
    return good, good_run, bad


def _tampering(settings: Settings) -> list[tuple[str, int | None]]:
    with transaction(settings.resolved_database_url) as session:
        rows = session.execute(select(TamperEvent.kind, TamperEvent.version))
        return sorted((kind, version) for kind, version in rows)


def test_publishing_puts_the_alias_on_the_newest_passing_version(
    settings: Settings, registry: FakeRegistry
) -> None:
    good, good_run, bad = _good_then_bad(settings, registry)
    assert registry.alias_version(MODEL, ALIAS) == good
    assert registry.versions[(MODEL, good)].tags[TagKey.RUN_ID] == good_run
    assert registry.versions[(MODEL, bad)].tags[TagKey.STATUS] == "failed"
    writes = len(registry.writes)
    publish_run(settings, registry, good_run)
    assert len(registry.writes) == writes, "a published run is not published again"
    assert _tampering(settings) == []


def test_an_alias_moved_by_hand_is_put_back_and_recorded_once(
    settings: Settings, registry: FakeRegistry
) -> None:
    good, _, bad = _good_then_bad(settings, registry)
    registry.set_alias(MODEL, ALIAS, bad)  # a registry user
    guard_model(settings, registry, MODEL)
    guard_model(settings, registry, MODEL)
    assert registry.alias_version(MODEL, ALIAS) == good
    assert registry.versions[(MODEL, bad)].tags[TagKey.STATUS] == "tampered"
    assert _tampering(settings) == [("alias", bad)]


def test_a_forged_status_is_rewritten_and_recorded_once(
    settings: Settings, registry: FakeRegistry
) -> None:
    _, _, bad = _good_then_bad(settings, registry)
    registry.set_version_tags(MODEL, bad, {TagKey.STATUS: "passed"})
    for _ in range(3):
        guard_model(settings, registry, MODEL)
    assert registry.versions[(MODEL, bad)].tags[TagKey.STATUS] == "tampered"
    assert _tampering(settings) == [("tag", bad)]


def test_a_report_link_under_another_base_url_is_rewritten_but_is_not_tampering(
    settings: Settings, registry: FakeRegistry
) -> None:
    good, run_id = _decided(settings, registry, RunStatus.PASSED, b"good")
    elsewhere = f"http://replica-2.internal:8000/runs/{run_id}"
    registry.set_version_tags(MODEL, good, {TagKey.REPORT_URL: elsewhere})
    guard_model(settings, registry, MODEL)
    assert registry.versions[(MODEL, good)].tags[TagKey.REPORT_URL] == (
        f"http://gk.test/runs/{run_id}"
    )
    assert _tampering(settings) == []
    # a link to another run is a forgery, whatever its host
    registry.set_version_tags(MODEL, good, {TagKey.REPORT_URL: "http://gk.test/runs/other"})
    guard_model(settings, registry, MODEL)
    assert _tampering(settings) == [("tag", good)]


def test_the_alias_never_moves_onto_files_changed_after_their_run(
    settings: Settings, registry: FakeRegistry
) -> None:
    old, _ = _decided(settings, registry, RunStatus.PASSED, b"old")
    new, _ = _decided(settings, registry, RunStatus.PASSED, b"new")
    assert registry.alias_version(MODEL, ALIAS) == new
    registry.versions[(MODEL, new)].files["model.pkl"] = b"swapped in the artifact store"
    registry.set_alias(MODEL, ALIAS, old)  # moved by hand; putting it back re-hashes `new`
    guard_model(settings, registry, MODEL)
    assert registry.alias_version(MODEL, ALIAS) == old, "the changed files never get the alias"
    assert ("artifact", new) in _tampering(settings)
    assert registry.versions[(MODEL, new)].tags[TagKey.STATUS] == "tampered"


def test_a_deleted_version_does_not_switch_the_guard_off(
    settings: Settings, registry: FakeRegistry
) -> None:
    good, _ = _decided(settings, registry, RunStatus.PASSED, b"good")
    gone, _ = _decided(settings, registry, RunStatus.PASSED, b"gone")
    del registry.versions[(MODEL, gone)]  # deleted in MLflow
    registry.aliases[MODEL].pop(ALIAS)
    guard_model(settings, registry, MODEL)
    assert registry.alias_version(MODEL, ALIAS) == good
    bad, _ = _decided(settings, registry, RunStatus.FAILED, b"bad")
    registry.set_alias(MODEL, ALIAS, bad)
    guard_model(settings, registry, MODEL)
    assert registry.alias_version(MODEL, ALIAS) == good


def test_the_fake_answers_every_call_of_the_port_with_the_adapters_parameters() -> None:
    """The fake stays what the adapter is: same methods, same parameter names and kinds."""
    from service.mlflow.port import RegistryPort
    from service.mlflow.registry import Registry

    calls = [n for n in vars(RegistryPort) if not n.startswith("_")]
    assert len(calls) == 14
    for name in calls:
        port = inspect.signature(getattr(RegistryPort, name))
        for implementation in (Registry, FakeRegistry):
            assert inspect.signature(getattr(implementation, name)).parameters.keys() == (
                port.parameters.keys()
            ), (implementation.__name__, name)
