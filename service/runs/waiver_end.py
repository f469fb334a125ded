"""When a waiver ends (expires or is revoked), what it let through is decided again.

A waiver is a time-boxed exception; a version it let through must not keep the alias, the
`waived` tag and a valid signature once it ends. So for every version whose latest run is
`waived` by it, the run's recorded decision input is judged again (the gates' results as
recorded, the policy as it is now, the waivers active now) into a new run with trigger
`waiver-ended`, which is published like any other: tags from the record, the alias by the
guard's rule, the signature revoked with the version (service/runs/revocations.py). The
poller handles expiries; a revocation is handled at once and again by the poller if that
failed. Every step is audited.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Settings
from service.decision.verdict import Decision, replay
from service.mlflow.port import RegistryPort
from service.policy import policy_for
from service.runs.guard import latest_runs
from service.runs.promotion import publish_run
from service.runs.waivers import waiver_record
from service.store import audit
from service.store.db import transaction
from service.store.tables import GateResultRow, GateRun, RunStatus, Trigger, Waiver, utcnow
from service.store.waivers import ended_unhandled, waivers_for_run

log = logging.getLogger("gatekeeper.waivers")


def handle_ended_waivers(settings: Settings, registry: RegistryPort) -> list[str]:
    """Every waiver that ended and was not handled yet; returns the new runs' ids."""
    with transaction(settings.resolved_database_url) as session:
        ended = [w.id for w in ended_unhandled(session)]
    made: list[str] = []
    for waiver_id in ended:
        try:
            made += end_waiver(settings, registry, waiver_id)
        except Exception:
            log.exception("waiver=%s ended but its versions could not be decided again", waiver_id)
    return made


def end_waiver(settings: Settings, registry: RegistryPort, waiver_id: str) -> list[str]:
    """Decide again every version whose latest run this waiver let through; publish each."""
    with transaction(settings.resolved_database_url) as session:
        waiver = session.get(Waiver, waiver_id)
        if waiver is None or waiver.ended_handled_at is not None:
            return []
        made = [_redecide(settings, session, run, waiver) for run in _let_through(session, waiver)]
        waiver.ended_handled_at = utcnow()
        if not made:  # it let nothing through that still stands: nothing to say
            return []
        audit.record(
            session, actor="gatekeeper", action="waiver.ended",
            target=f"{waiver.model_name}/{waiver.version or waiver.artifact_digest}",
            details={"waiver_id": waiver.id, "revoked": waiver.revoked_at is not None,
                     "redecided_runs": made},
        )  # fmt: skip
    for run_id in made:
        try:
            publish_run(settings, registry, run_id)
        except Exception:  # recorded: the poller publishes it
            log.exception("run=%s decided again but not yet published", run_id)
    return made


def _let_through(session: Session, waiver: Waiver) -> list[GateRun]:
    """The model's versions whose latest run is `waived` with this waiver among the reasons."""
    runs = latest_runs(session, waiver.model_name).values()
    return [
        run for run in runs
        if run.status == RunStatus.WAIVED and waiver.id in _waivers_used(run.decision or {})
    ]  # fmt: skip


def _waivers_used(decision: dict[str, Any]) -> set[str]:
    return {str(w) for entry in decision.get("waived") or [] for w in entry.get("waivers") or []}


def _redecide(settings: Settings, session: Session, run: GateRun, waiver: Waiver) -> str:
    """A new run holding `run`'s results, judged again now; its id."""
    now = utcnow()
    document = copy.deepcopy((run.decision or {}).get("input") or {})
    active = waivers_for_run(
        session, run.model_name, run.model_version, run.artifact_digest, now=now
    )
    document["waivers"] = [waiver_record(w).document() for w in active]
    document["now"] = now.isoformat()
    document["now_ns"] = int(now.timestamp()) * 10**9 + now.microsecond * 1000
    if document.get("gates"):
        decision = replay(document, policy_for(run.model_name, settings.policy_path))
    else:  # recorded before decision inputs were kept: nothing to judge, fail closed
        why = "no recorded decision input to decide again without the waiver; re-run it"
        decision = Decision(RunStatus.ERROR, [why], [], input=document)
    again = GateRun(
        model_name=run.model_name, model_version=run.model_version, trigger=Trigger.WAIVER_ENDED,
        status=decision.status.value, policy_digest=run.policy_digest,
        artifact_digest=run.artifact_digest, artifact_manifest=run.artifact_manifest,
        datasets=run.datasets, decision=decision.to_dict(), sandbox=run.sandbox,
        requested_by=f"waiver {waiver.id} ended", created_at=now, started_at=now,
        finished_at=now, attempt=run.attempt, max_attempts=run.max_attempts,
        error_message=None if decision.status != RunStatus.ERROR else decision.deny[0],
    )  # fmt: skip
    session.add(again)
    session.flush()
    for result in session.scalars(select(GateResultRow).where(GateResultRow.run_id == run.id)):
        session.add(
            GateResultRow(
                run_id=again.id, gate=result.gate, status=result.status, message=result.message,
                metrics=result.metrics, thresholds=result.thresholds, findings=result.findings,
                evidence=result.evidence, diagnostics=result.diagnostics,
                report_html=result.report_html, duration_s=result.duration_s, created_at=now,
            )
        )  # fmt: skip
    audit.record(
        session, actor="gatekeeper", action="run.redecided",
        target=f"{run.model_name}/{run.model_version}",
        details={"run_id": again.id, "from_run": run.id, "waiver_id": waiver.id,
                 "status": decision.status.value, "deny": decision.deny[:5]},
    )  # fmt: skip
    log.warning(
        "model=%s version=%s waiver=%s ended: run=%s decided again: %s",
        run.model_name, run.model_version, waiver.id, again.id, decision.status.value,
    )  # fmt: skip
    return again.id
