"""The runs table as a queue, on real SQLite and real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gates.base import GateResult, Status
from service.config import Settings
from service.decision.verdict import Decision
from service.errors import LeaseLost
from service.mlflow.registry import Registry
from service.runs.queue import claim_next_run, enqueue_run, finish_run, heartbeat
from service.runs.worker import start_worker_thread
from service.store.db import transaction
from service.store.tables import GateRun, RunStatus, utcnow
from tests.conftest import BOTH_DATABASES
from tests.helpers import Listener

pytestmark = BOTH_DATABASES

PASSED = Decision(RunStatus.PASSED, [], [])


def _enqueue(url: str, version: int = 1, automatic: bool = True, max_attempts: int = 3) -> str:
    with transaction(url) as session:
        run_id, _ = enqueue_run(
            session,
            model_name="churn",
            version=version,
            trigger="webhook" if automatic else "manual",
            policy_digest="p" * 64,
            max_attempts=max_attempts,
            automatic=automatic,
        )
    return run_id


def _claim(url: str, worker: str, lease_s: float = 30, now: dt.datetime | None = None):
    with transaction(url) as session:
        return claim_next_run(session, worker_id=worker, lease_s=lease_s, now=now)


def test_concurrent_automatic_enqueues_make_one_run(database_url: str) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(20)

    def enqueue() -> None:
        barrier.wait()
        ids.append(_enqueue(database_url))

    threads = [threading.Thread(target=enqueue) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with transaction(database_url) as session:
        assert session.scalar(select(func.count()).select_from(GateRun)) == 1
    assert len(set(ids)) == 1


def test_manual_runs_are_never_collapsed(database_url: str) -> None:
    first, second = _enqueue(database_url, automatic=False), _enqueue(database_url, automatic=False)
    assert first != second


def test_two_workers_never_claim_the_same_run(database_url: str) -> None:
    for version in range(1, 11):
        _enqueue(database_url, version=version)
    claimed: list[str] = []
    lock = threading.Lock()

    def drain(worker: str) -> None:
        while (run := _claim(database_url, worker)) is not None:
            with lock:
                claimed.append(run.id)

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 10 and len(set(claimed)) == 10


def test_expired_lease_is_reclaimed_and_old_owner_is_fenced(database_url: str) -> None:
    run_id = _enqueue(database_url)
    first = _claim(database_url, "worker-a", lease_s=5)
    assert first is not None and first.id == run_id and first.attempt == 1
    assert _claim(database_url, "worker-b") is None  # lease still valid
    later = utcnow() + dt.timedelta(seconds=6)
    second = _claim(database_url, "worker-b", now=later)
    assert second is not None and second.id == run_id and second.attempt == 2
    with transaction(database_url) as session:
        assert not heartbeat(session, run_id=run_id, worker_id="worker-a", lease_s=5)
    with pytest.raises(LeaseLost), transaction(database_url) as session:
        finish_run(
            session,
            run_id=run_id,
            worker_id="worker-a",
            decision=PASSED,
            results=[],
            artifact_digest=None,
            artifact_manifest=None,
        )
    with transaction(database_url) as session:
        finish_run(
            session,
            run_id=run_id,
            worker_id="worker-b",
            decision=PASSED,
            results=[GateResult(gate="security", status=Status.PASS)],
            artifact_digest="d" * 64,
            artifact_manifest=[],
        )
    with transaction(database_url) as session:
        run = session.get(GateRun, run_id)
        assert run is not None and run.status == RunStatus.PASSED
        assert [r.gate for r in run.results] == ["security"]


def test_attempts_are_capped_then_error(database_url: str) -> None:
    run_id = _enqueue(database_url, max_attempts=2)
    now = utcnow()
    assert _claim(database_url, "a", lease_s=1, now=now) is not None
    assert _claim(database_url, "b", lease_s=1, now=now + dt.timedelta(seconds=2)) is not None
    assert _claim(database_url, "c", lease_s=1, now=now + dt.timedelta(seconds=4)) is None
    with transaction(database_url) as session:
        run = session.get(GateRun, run_id)
        assert run is not None and run.status == RunStatus.ERROR
        assert "gave up after 2 attempt(s)" in (run.error_message or "")


def test_a_flood_of_one_model_delays_another_model_by_at_most_one_run(database_url: str) -> None:
    """200 versions of one model queued first; a run of another model queued after them is
    claimed within two claims, and the flood still drains in version order afterwards."""
    with transaction(database_url) as session:
        for version in range(1, 201):
            enqueue_run(
                session, model_name="flood", version=version, trigger="webhook",
                policy_digest="p", max_attempts=3, automatic=True,
            )  # fmt: skip
    with transaction(database_url) as session:
        first = claim_next_run(session, worker_id="w", lease_s=60)
    assert first is not None and (first.model_name, first.model_version) == ("flood", 1)
    with transaction(database_url) as session:
        enqueue_run(
            session, model_name="other", version=1, trigger="webhook",
            policy_digest="p", max_attempts=3, automatic=True,
        )  # fmt: skip
    order = []
    for _ in range(200):  # v1 stays in hand; 199 more of the flood and the other model
        with transaction(database_url) as session:
            claimed = claim_next_run(session, worker_id="w", lease_s=60)
            assert claimed is not None
            order.append((claimed.model_name, claimed.model_version))
            finish_run(
                session, run_id=claimed.id, worker_id="w", decision=PASSED,
                results=[], artifact_digest=None, artifact_manifest=None,
            )  # fmt: skip
    assert order.index(("other", 1)) == 0, order[:5]  # the flood's run in hand was the one
    flood = [v for m, v in order if m == "flood"]
    assert flood == list(range(2, 201))


@pytest.mark.slow
def test_a_worker_shutting_down_gives_the_run_in_hand_back(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker is mid-run (MLflow hangs); on shutdown the run goes back to the queue at
    once, not counted as an attempt, and the old worker's late end does not touch it."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    run_id = _enqueue(database_url)
    hung_mlflow = Listener(hold=True)
    settings = Settings(data_dir=tmp_path, database_url=database_url, worker_idle_sleep_s=0.1)
    stop = threading.Event()
    running = start_worker_thread(settings, Registry(f"http://127.0.0.1:{hung_mlflow.port}"), stop)
    try:
        deadline = time.monotonic() + 20
        while _status(database_url, run_id) != RunStatus.RUNNING:
            assert time.monotonic() < deadline, "the worker never claimed the run"
            time.sleep(0.05)
        stop.set()
        running.stop(grace_s=0.2)
        with transaction(database_url) as session:
            run = session.get(GateRun, run_id)
            assert run is not None
            assert (run.status, run.attempt, run.lease_owner) == (RunStatus.QUEUED, 0, None)
        taken = _claim(database_url, "worker-b")
        assert taken is not None and taken.id == run_id and taken.attempt == 1
        running.thread.join(timeout=30)  # its MLflow call times out; it finds the run gone
        assert not running.thread.is_alive()
        with transaction(database_url) as session:
            run = session.get(GateRun, run_id)
            assert run is not None
            assert (run.status, run.lease_owner) == (RunStatus.RUNNING, "worker-b")
    finally:
        stop.set()
        hung_mlflow.close()


def _status(url: str, run_id: str) -> str | None:
    with transaction(url) as session:
        run = session.get(GateRun, run_id)
        return run.status if run else None
