"""The `gatekeeper.*` tags a version's record implies: what the publisher writes and the
guard compares with. Pure derivations of a recorded run (no MLflow, no writes)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gates.base import Finding, Status
from service.config import Settings
from service.store.tables import ArtifactSignature, GateRun
from service.vocabulary import RunStatus, TagKey

MAX_TAG_VALUE = 500


def report_url(settings: Settings, run_id: str) -> str:
    return f"{settings.public_url.rstrip('/')}/runs/{run_id}"


def running_tags(settings: Settings, run_id: str) -> dict[str, str]:
    return {
        TagKey.STATUS: RunStatus.RUNNING,
        TagKey.RUN_ID: run_id,
        TagKey.REPORT_URL: report_url(settings, run_id),
    }


def final_tags(
    settings: Settings, run: GateRun, signature_uri: str | None = None
) -> dict[str, str]:
    """Tags in the order they are written: `gatekeeper.status` last, so whoever sees the final
    status (MLflow sets tags one call at a time) also sees every other tag of the run."""
    tags: dict[str, str] = {
        TagKey.RUN_ID: run.id,
        TagKey.REPORT_URL: report_url(settings, run.id),
        TagKey.POLICY_DIGEST: run.policy_digest,
        TagKey.ARTIFACT_DIGEST: run.artifact_digest or "",
    }
    # what the decision says of each gate (`warn` for a gate in warn mode that did not pass,
    # `waived` for one a waiver let through), else the gate's own status
    decided = (run.decision or {}).get("gates") or {}
    for result in run.results:
        tags[TagKey.gate(result.gate)] = str(decided.get(result.gate, result.status))
    # always written, so a later passing run replaces an earlier run's finding
    tags[TagKey.FINDING] = (_top_finding(run) or "none")[:MAX_TAG_VALUE]
    tags[TagKey.SUMMARY] = _summary(run)[:MAX_TAG_VALUE]
    if signature_uri is not None:
        tags[TagKey.SIGNATURE_URI] = signature_uri
    tags[TagKey.STATUS] = run.status
    return tags


def _summary(run: GateRun) -> str:
    """The first reason to deny; for a waived run, what was let through and by which waiver
    (never "all enforced gates passed" for a version that passed only by a waiver)."""
    decision = run.decision or {}
    deny = decision.get("deny") or []
    if deny:
        return str(deny[0])
    waived = [w for w in decision.get("waived") or [] if isinstance(w, dict)]
    if waived:
        return "waived: " + "; ".join(
            f"{w.get('gate')} by {', '.join(map(str, w.get('waivers') or []))}: {w.get('message')}"
            for w in waived
        )
    return run.error_message or "all enforced gates passed"


def _top_finding(run: GateRun) -> str | None:
    """The most severe finding of a failing gate, as one line for the registry UI."""
    blocking = (Status.FAIL.value, Status.ERROR.value)
    candidates = [
        Finding.from_dict(f) for r in run.results if r.status in blocking for f in r.findings or []
    ]
    if not candidates:
        return None
    worst = max(candidates, key=lambda f: f.severity.rank)
    return f"{worst.severity} {worst.rule_id} {worst.where}: {worst.message}"


def signature_uri(session: Session, run_id: str) -> str | None:
    """Where the run's signature was logged in MLflow, if it was signed and logged."""
    row = session.get(ArtifactSignature, run_id)
    return row.mlflow_uri if row is not None else None
