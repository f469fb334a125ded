"""The decision input: everything the Rego rules may look at, as one JSON document.

Described for policy authors in the README ("The decision input"). It is stored with the
decision, so `gatekeeper policy test` can replay a run under another policy without MLflow.
Every value is plain JSON: a metric that is not a finite number becomes null.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gates.base import GateResult

# Every finding reaches the rules (a rule waiver must see each one it would cover: a list cut
# at N lets N padding findings of a waived rule hide a HIGH one); what is cut is each
# finding's text, never the list.
MAX_FINDING_TEXT = 300
MAX_EVIDENCE_KEYS = 16
MAX_EVIDENCE_TEXT = 200


@dataclass(frozen=True)
class WaiverRecord:
    """A waiver as the decision sees it (the store's row, without the database)."""

    id: str
    model: str
    version: int | None
    artifact_digest: str | None
    gate: str | None
    rule_id: str | None
    reason: str
    expires_at: dt.datetime
    created_by: str
    revoked: bool = False

    def document(self) -> dict[str, Any]:
        expires = self.expires_at.astimezone(dt.UTC)
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "artifact_digest": self.artifact_digest,
            "gate": self.gate,
            "rule_id": self.rule_id,
            "reason": self.reason,
            "expires_at": expires.isoformat(),
            "expires_at_ns": _ns(expires),
            "created_by": self.created_by,
            "revoked": self.revoked,
        }


@dataclass(frozen=True)
class DecisionContext:
    """What the decision knows besides the gate results; all optional for a bare decide()."""

    model_name: str = ""
    model_version: int = 0
    run_id: str | None = None  # the MLflow run that produced the version
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    model_inputs: Sequence[str] = ()  # the MLmodel signature's input columns
    datasets: Sequence[Mapping[str, Any]] = ()  # LoadedDataset.record() of each dataset
    artifact_digest: str | None = None
    waivers: Sequence[WaiverRecord] = ()
    now: dt.datetime | None = None


def build_input(
    results: Sequence[GateResult],
    modes: Mapping[str, str],
    context: DecisionContext,
    *,
    entry: str,
    policy_digest: str,
    columns: Mapping[str, str],
    pii_inputs: Sequence[str],
    allow_critical: bool,
) -> dict[str, Any]:
    now = (context.now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    document = {
        "now": now.isoformat(),
        "now_ns": _ns(now),
        "model": {
            "name": context.model_name,
            "version": context.model_version,
            "run_id": context.run_id,
            "description": context.description,
            "tags": dict(context.tags),
            "inputs": list(context.model_inputs),
            "artifact_digest": context.artifact_digest,
        },
        "gates": [_gate(r, modes.get(r.gate, "off")) for r in results],
        "datasets": [_dataset(d) for d in context.datasets],
        "data": {"columns": dict(columns), "pii_inputs": list(pii_inputs)},
        "waivers": [w.document() for w in context.waivers],
        "policy": {
            "entry": entry,
            "digest": policy_digest,
            "waivers": {"allow_critical": allow_critical},
        },
    }
    plain: dict[str, Any] = _plain(document)
    return plain


def _gate(result: GateResult, mode: str) -> dict[str, Any]:
    return {
        "name": result.gate,
        "mode": mode,
        "status": result.status.value,
        "message": result.message,
        "metrics": dict(result.metrics),
        "thresholds": dict(result.thresholds),
        "findings": [
            {
                "rule_id": f.rule_id,
                "severity": f.severity.value,
                "message": f.message[:MAX_FINDING_TEXT],
                "where": f.where[:MAX_FINDING_TEXT],
                "evidence": _small_evidence(f.evidence),
            }
            for f in result.findings
        ],
    }


def _small_evidence(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """A finding's evidence as the rules see it: scalar values only (text cut short), so a
    finding's size is bounded however many there are. The whole evidence stays on the run."""
    small: dict[str, Any] = {}
    for key, value in evidence.items():
        if len(small) >= MAX_EVIDENCE_KEYS:
            break
        if isinstance(value, str):
            small[str(key)] = value[:MAX_EVIDENCE_TEXT]
        elif value is None or isinstance(value, bool | int | float):
            small[str(key)] = value
    return small


def _dataset(record: Mapping[str, Any]) -> dict[str, Any]:
    logged = record.get("logged") or {}
    return {
        "name": record.get("name"),
        "source": record.get("source"),
        "origin": record.get("origin"),
        "trainer_supplied": bool(record.get("trainer_supplied")),
        "sha256": record.get("sha256"),
        "logged_digest": logged.get("digest") if isinstance(logged, Mapping) else None,
        "rows": record.get("rows"),
        "columns": list(record.get("columns") or []),
    }


def _ns(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def _plain(value: Any) -> Any:
    """JSON values only: numpy scalars to Python, non-finite floats to null, keys to text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)
    if callable(item):
        return _plain(item())
    return str(value)
