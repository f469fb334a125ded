"""The loop that claims a run and drives it: pipeline, record, publish.

The worker decides and carries out; queue SQL lives in service/runs/queue.py. While a run is in
hand a heartbeat thread keeps the lease alive; a worker that dies simply stops heartbeating and
another claims the run when the lease expires.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service.config import Settings
from service.decision.document import WaiverRecord
from service.decision.verdict import Decision
from service.errors import LeaseLost, LocalDiskError, disk_error_kind
from service.integrity.keys import signing_key
from service.integrity.signing import SignedClaims, sign_directory
from service.metrics import RUN_DURATION, RUNS_FINISHED
from service.mlflow.registry import Registry
from service.policy import policy_for
from service.runs.guard import record_artifact_tampering, recorded_baseline
from service.runs.pipeline import PipelineOutcome, run_pipeline
from service.runs.promotion import publish_run
from service.runs.queue import (
    ClaimedRun,
    claim_next_run,
    finish_run,
    heartbeat,
    passing_artifact_digests,
    release,
    retry_later,
    transient_history,
)
from service.runs.retry import retry_decision
from service.runs.reverify import promoted_digest
from service.runs.version_tags import running_tags
from service.runs.waivers import waiver_record
from service.store.db import transaction
from service.store.tables import ArtifactSignature, RunStatus
from service.store.waivers import waivers_for_run

T = TypeVar("T")
log = logging.getLogger("gatekeeper.worker")


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# After the run's deadline the pipeline gets this long to notice it (every stage is bounded by
# what is left) before the heartbeat gives the run up as `error` on its own.
DEADLINE_GRACE_S = 30.0


class _Heartbeat:
    """Extends the lease every lease/3 seconds until stopped; notes when the lease is lost.

    Past the run's deadline (plus a grace) it stops renewing and calls `on_deadline`, which
    records the run as `error`: a stage that never returns cannot hold a run forever.
    """

    def __init__(
        self,
        settings: Settings,
        run_id: str,
        worker_id: str,
        on_deadline: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._run_id = run_id
        self._worker_id = worker_id
        self._stop = threading.Event()
        self._deadline = time.monotonic() + settings.run_deadline_s + DEADLINE_GRACE_S
        self._on_deadline = on_deadline
        self.lost = False
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        interval = max(self._settings.lease_s / 3, 0.2)
        while not self._stop.wait(interval):
            if time.monotonic() > self._deadline:
                log.error("run=%s passed its deadline; giving it up as error", self._run_id)
                if self._on_deadline is not None:
                    self._on_deadline()
                return
            try:
                with transaction(self._settings.resolved_database_url) as session:
                    still_ours = heartbeat(
                        session,
                        run_id=self._run_id,
                        worker_id=self._worker_id,
                        lease_s=self._settings.lease_s,
                    )
            except Exception:
                log.exception("run=%s heartbeat failed; will retry", self._run_id)
                continue
            if not still_ours:
                self.lost = True
                log.warning("run=%s lease lost to another worker", self._run_id)
                return


class Worker:
    def __init__(self, settings: Settings, registry: Registry, worker_id: str | None = None):
        self.settings = settings
        self.registry = registry
        self.worker_id = worker_id or new_worker_id()
        self._in_flight: ClaimedRun | None = None
        self._in_flight_lock = threading.Lock()
        self._signing_key = signing_key(settings.signing_key_path, settings.data_dir)

    def _sign(self, directory: Path, claims: SignedClaims) -> str:
        claims = dataclasses.replace(claims, key_id=self._signing_key.key_id)
        return sign_directory(directory, self._signing_key.private_path, claims)

    def give_back(self) -> str | None:
        """On shutdown: return the run in hand to the queue at once, not counted as an
        attempt, so another worker (or this one after a restart) takes it now instead of when
        the lease expires. The pipeline still running here then loses its lease and its result
        is dropped (`finish_run` is fenced by the lease). Returns the run's id, if any."""
        with self._in_flight_lock:
            claimed = self._in_flight
        if claimed is None:
            return None
        try:
            with transaction(self.settings.resolved_database_url) as session:
                release(session, run_id=claimed.id, worker_id=self.worker_id)
        except LeaseLost:
            return None  # it finished (or was taken over) in the meantime
        log.warning(
            "run=%s given back to the queue: worker %s is shutting down",
            claimed.id,
            self.worker_id,
        )
        return claimed.id

    def _holding(self, claimed: ClaimedRun | None) -> None:
        with self._in_flight_lock:
            self._in_flight = claimed

    def run_forever(self, stop: threading.Event) -> None:
        log.info("worker %s started", self.worker_id)
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                # The database itself is unreachable: back off and keep the worker alive.
                log.exception("worker %s could not claim a run", self.worker_id)
                busy = False
            if not busy:
                stop.wait(self.settings.worker_idle_sleep_s)
        log.info("worker %s stopped", self.worker_id)

    def run_once(self) -> bool:
        """Claim and drive one run. Returns False when nothing was claimable."""
        with transaction(self.settings.resolved_database_url) as session:
            claimed = claim_next_run(
                session, worker_id=self.worker_id, lease_s=self.settings.lease_s
            )
        if claimed is None:
            return False
        self._holding(claimed)
        try:
            return self._drive(claimed)
        finally:
            self._holding(None)

    def _drive(self, claimed: ClaimedRun) -> bool:
        log.info(
            "run=%s claimed model=%s version=%s attempt=%s/%s",
            claimed.id,
            claimed.model_name,
            claimed.model_version,
            claimed.attempt,
            claimed.max_attempts,
        )
        started = time.perf_counter()
        on_deadline = functools.partial(self._abandon, claimed)
        with _Heartbeat(self.settings, claimed.id, self.worker_id, on_deadline):
            try:
                self.registry.set_version_tags(
                    claimed.model_name,
                    claimed.model_version,
                    running_tags(self.settings, claimed.id),
                )
                outcome = run_pipeline(
                    claimed,
                    registry=self.registry,
                    policy=policy_for(claimed.model_name, self.settings.policy_path),
                    scratch_root=Path(self.settings.scratch_dir),
                    passing_digests=self._passing_digests,
                    active_waivers=self._active_waivers,
                    sign=self._sign,
                    isolation=self.settings.isolation,
                    baseline=self._baseline,
                    deadline_s=self.settings.run_deadline_s,
                    allowed_sources=self.settings.logged_data_prefixes,
                )
            except Exception as exc:
                self._handle_failure(claimed, exc)
                return True
            try:
                self._record(claimed, outcome)
            except LeaseLost:
                log.warning("run=%s finished after its lease expired; result dropped", claimed.id)
                return True
        RUN_DURATION.observe(time.perf_counter() - started)
        self._publish(claimed.id)
        return True

    def _active_waivers(
        self, model_name: str, version: int, artifact_digest: str | None
    ) -> list[WaiverRecord]:
        def read() -> list[WaiverRecord]:
            with transaction(self.settings.resolved_database_url) as session:
                found = waivers_for_run(session, model_name, version, artifact_digest)
                return [waiver_record(w) for w in found]

        # asked at decision time, mid-run: an outage then is waited out like one while recording
        return self._through_outage(f"{model_name}/{version}", "reading waivers", read)

    # Both are read mid-run like the waivers: a database outage then is waited out, not
    # turned into a failed attempt (a loaded machine reaches them seconds after the claim).
    def _baseline(self, model_name: str, version: int) -> int | None:
        def read() -> int | None:
            with transaction(self.settings.resolved_database_url) as session:
                return recorded_baseline(session, model_name, version)

        return self._through_outage(f"{model_name}/{version}", "reading the baseline", read)

    def _passing_digests(self, model_name: str, version: int) -> set[str]:
        def read() -> set[str]:
            with transaction(self.settings.resolved_database_url) as session:
                return passing_artifact_digests(session, model_name, version)

        where = f"{model_name}/{version}"
        return self._through_outage(where, "reading passing digests", read)

    def _record(self, claimed: ClaimedRun, outcome: PipelineOutcome) -> None:
        """Record the decision; a database outage is waited out (capped backoff, within the
        transient horizon), never turned into a lost lease and a re-run."""
        self._through_outage(claimed.id, "recording", lambda: self._record_once(claimed, outcome))

    def _through_outage(self, run_id: str, what: str, work: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.settings.transient_horizon_s
        delay = 0.5
        while True:
            try:
                return work()
            except DBAPIError:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "run=%s database unavailable while %s; retrying in %.1f s",
                    run_id,
                    what,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _record_once(self, claimed: ClaimedRun, outcome: PipelineOutcome) -> None:
        name, version = claimed.model_name, claimed.model_version
        with transaction(self.settings.resolved_database_url) as session:
            before = promoted_digest(session, name, version)
        if before is not None and outcome.artifact_digest not in (None, before):
            # the files under a version that was let through changed: tampering, whatever
            # this run decides (the version can no longer hold the alias)
            found = {"recorded_digest": before, "found_digest": outcome.artifact_digest,
                     "how": f"re-run {claimed.id}"}  # fmt: skip
            record_artifact_tampering(self.settings, name, version, found)
        with transaction(self.settings.resolved_database_url) as session:
            finish_run(
                session,
                run_id=claimed.id,
                worker_id=self.worker_id,
                decision=outcome.decision,
                results=outcome.results,
                artifact_digest=outcome.artifact_digest,
                artifact_manifest=outcome.manifest,
                datasets=outcome.datasets,
                sandbox=outcome.sandbox,
            )
            if outcome.signature is not None:
                session.add(
                    ArtifactSignature(
                        run_id=claimed.id,
                        model_name=name,
                        version=version,
                        artifact_digest=outcome.artifact_digest or "",
                        bundle=outcome.signature,
                        key_id=self._signing_key.key_id,
                    )
                )
        RUNS_FINISHED.labels(status=outcome.decision.status).inc()
        log.info(
            "run=%s decided status=%s deny=%s",
            claimed.id,
            outcome.decision.status,
            outcome.decision.deny,
        )

    def _finish_as_error(
        self, session: Session, claimed: ClaimedRun, message: str, error_kind: str | None = None
    ) -> None:
        """The run ends `error` with no gate results; `message` is its one reason to deny."""
        finish_run(
            session,
            run_id=claimed.id,
            worker_id=self.worker_id,
            decision=Decision(RunStatus.ERROR, [message], []),
            results=[],
            artifact_digest=None,
            artifact_manifest=None,
            error_message=message,
            error_kind=error_kind,
        )

    def _abandon(self, claimed: ClaimedRun) -> None:
        """The run passed its deadline and a stage has not returned: record it as `error`."""
        message = (
            f"BoundExceeded: the run exceeded its deadline of {self.settings.run_deadline_s:g} s "
            "(a stage did not return in time) and was stopped"
        )
        try:
            with transaction(self.settings.resolved_database_url) as session:
                self._finish_as_error(session, claimed, message)
        except LeaseLost:
            return
        except Exception:
            log.exception("run=%s could not be recorded as past its deadline", claimed.id)
            return
        RUNS_FINISHED.labels(status=RunStatus.ERROR).inc()
        self._publish(claimed.id)

    def _handle_failure(self, claimed: ClaimedRun, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        disk = disk_error_kind(exc)
        if disk is not None and not isinstance(exc, LocalDiskError):
            message = f"{disk} on the gatekeeper's data dir: {message}"
        try:
            with transaction(self.settings.resolved_database_url) as session:
                history = transient_history(session, run_id=claimed.id, worker_id=self.worker_id)
                decision = retry_decision(
                    exc,
                    transient_failures=history.failures,
                    transient_for_s=history.for_s,
                    horizon_s=self.settings.transient_horizon_s,
                    backoff_s=self.settings.retry_backoff_s,
                    max_delay_s=self.settings.retry_max_delay_s,
                )
                if decision.retry:
                    retry_later(
                        session,
                        run_id=claimed.id,
                        worker_id=self.worker_id,
                        delay_s=decision.delay_s,
                        message=message,
                        transient=decision.transient,
                    )
                else:
                    kind = "transient" if decision.transient else None
                    self._finish_as_error(session, claimed, message, error_kind=kind)
        except LeaseLost:
            log.warning("run=%s failed after its lease expired; nothing recorded", claimed.id)
            return
        except DBAPIError:
            log.exception("run=%s failure could not be recorded (database down)", claimed.id)
            return
        if decision.retry:
            log.warning(
                "run=%s transient failure (%s for %.0f s), retry in %.0f s without spending an "
                "attempt: %s",
                claimed.id,
                history.failures + 1,
                history.for_s,
                decision.delay_s,
                message,
            )
            return
        RUNS_FINISHED.labels(status=RunStatus.ERROR).inc()
        log.error("run=%s gave up as error: %s", claimed.id, message)
        self._publish(claimed.id)

    def _publish(self, run_id: str) -> None:
        try:
            publish_run(self.settings, self.registry, run_id)
        except Exception:
            log.exception(
                "run=%s recorded but not yet published to MLflow; poller will retry", run_id
            )


# How long a shutdown waits for the run in hand before giving it back to the queue.
SHUTDOWN_GRACE_S = 10.0


@dataclass
class WorkerThread:
    worker: Worker
    thread: threading.Thread

    def stop(self, grace_s: float) -> None:
        """After `stop` is set: wait `grace_s` for the run in hand, then give it back."""
        self.thread.join(timeout=grace_s)
        if self.thread.is_alive():
            self.worker.give_back()


def start_worker_thread(
    settings: Settings, registry: Registry, stop: threading.Event
) -> WorkerThread:
    worker = Worker(settings, registry)
    thread = threading.Thread(target=worker.run_forever, args=(stop,), name="worker", daemon=True)
    thread.start()
    return WorkerThread(worker, thread)
