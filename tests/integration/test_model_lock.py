"""The registry-writer lock of a model holds across processes on one database (issue 22):
another process (a replica) waits for it, gives up with ModelLockBusy after its wait, and
gets it once the holder lets go or dies; within a process it is re-entrant."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from service.store.model_lock import ModelLockBusy, model_lock
from tests.conftest import BOTH_DATABASES

HOLDER = textwrap.dedent(
    """
    import sys, time
    from service.store.model_lock import model_lock
    with model_lock(sys.argv[1], sys.argv[2]):
        print("held", flush=True)
        sys.stdin.readline()  # until the test says so, or is gone
    """
)


def _holder(database_url: str, name: str) -> subprocess.Popen[str]:
    """Another process holding `name`'s lock until its stdin gets a line."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, database_url, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


@BOTH_DATABASES
def test_another_process_holding_the_lock_keeps_this_one_out(database_url: str) -> None:
    holder = _holder(database_url, "credit")
    try:
        with pytest.raises(ModelLockBusy, match="another gatekeeper process held"):
            with model_lock(database_url, "credit", wait_s=0.5):
                pass
        with model_lock(database_url, "other-model", wait_s=0.5):
            pass  # one model's lock does not hold up another's
        assert holder.stdin is not None
        holder.stdin.write("done\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
        with model_lock(database_url, "credit", wait_s=5):
            pass
    finally:
        holder.kill()
        holder.wait()


@BOTH_DATABASES
def test_a_holder_that_dies_lets_the_lock_go(database_url: str) -> None:
    holder = _holder(database_url, "credit")
    holder.kill()  # SIGKILL: no release, no clean-up
    holder.wait()
    with model_lock(database_url, "credit", wait_s=10):
        pass


@BOTH_DATABASES
def test_the_lock_is_reentrant_and_keeps_other_threads_out(database_url: str) -> None:
    got_in: list[str] = []
    with model_lock(database_url, "credit"):
        with model_lock(database_url, "credit", wait_s=0.5):  # the publisher reconciling
            pass

        def other() -> None:
            try:
                with model_lock(database_url, "credit", wait_s=0.3):
                    got_in.append("in")
            except ModelLockBusy:
                got_in.append("busy")

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert got_in == ["busy"]
    with model_lock(database_url, "credit", wait_s=0.5):
        pass


def test_a_busy_lock_is_a_retryable_answer_not_a_server_error(
    database_url: str, tmp_path: Path
) -> None:
    """An API request (a quarantine) that meets a lock held past its wait is told to retry,
    through the app's own error handling (no server process, no MLflow call is made)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.config import Settings

    settings = Settings(database_url=database_url, data_dir=tmp_path)
    app = create_app(
        settings, tracking_uri="http://127.0.0.1:9", run_worker=False, run_poller=False
    )

    @app.get("/busy")
    def busy() -> None:
        with model_lock(database_url, "credit", wait_s=0.2):
            pass

    holder = _holder(database_url, "credit")
    try:
        answer = TestClient(app).get("/busy")
    finally:
        holder.kill()
        holder.wait()
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    assert "another gatekeeper process held its registry lock" in answer.text
