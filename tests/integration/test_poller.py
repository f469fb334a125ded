"""The poller against a real MLflow server: it finds versions with no run, and a cycle reads
only what is new since the last one (O(new versions), not O(all versions))."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from demo.models import log_clean_model
from service.config import Settings
from service.mlflow.registry import Registry
from service.runs.poller import poll_once
from service.store.db import transaction
from service.store.tables import GateRun
from tests.conftest import BOTH_DATABASES
from tests.helpers import MlflowServer, unique_name


@BOTH_DATABASES
def test_poller_queues_new_versions_and_reads_only_new_ones(
    mlflow_server: MlflowServer, database_url: str, tmp_path: Path
) -> None:
    name = unique_name("poll")
    settings = Settings(data_dir=tmp_path, database_url=database_url, models=name)
    registry = Registry(mlflow_server.url)
    first_batch = [log_clean_model(mlflow_server.url, name) for _ in range(3)]

    first = poll_once(settings, registry, skew_ms=0)
    assert first.enqueued == 3
    assert first.examined >= 3  # first cycle: everything on the server, once

    idle = poll_once(settings, registry, skew_ms=0)
    assert idle.enqueued == 0
    assert idle.examined <= 1  # only the version sitting exactly on the watermark

    second_batch = [log_clean_model(mlflow_server.url, name) for _ in range(2)]
    after = poll_once(settings, registry, skew_ms=0)
    assert after.enqueued == 2
    assert after.examined <= 3  # the two new versions and the one on the old watermark

    with transaction(database_url) as session:
        runs = session.scalars(select(GateRun).where(GateRun.model_name == name)).all()
    assert sorted(r.model_version for r in runs) == first_batch + second_batch
    assert {r.trigger for r in runs} == {"poller"}
