"""A waiver request judged before it is granted: it must name something that exists, and
something it can actually let through.

A waiver that names a misspelt rule, a model MLflow does not have, or a CRITICAL security
finding the policy never lets a waiver cover (default.rego's `unwaivable`) was accepted and
silently did nothing; an approver believed the version would pass. Each is refused with the
reason instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from gates.base import Severity
from service.decision.rule_ids import known_rules
from service.errors import BadRequest
from service.policy import ModelPolicy
from service.store.tables import GateRun


@dataclass(frozen=True)
class WaiverRequest:
    model: str
    version: int | None
    gate: str | None
    rule_id: str | None


def check_waiver(
    request: WaiverRequest,
    *,
    model_exists: bool,
    policy: ModelPolicy,
    latest_run: GateRun | None,
) -> None:
    """Raises BadRequest naming why the waiver would be wrong or do nothing."""
    if not model_exists:
        raise BadRequest(f"MLflow has no registered model {request.model!r}")
    if request.rule_id is not None:
        _check_rule(request.rule_id)
    if policy.waivers.allow_critical:
        return
    critical = _critical_findings(request, latest_run)
    if critical:
        raise BadRequest(
            f"{critical[0]} is a CRITICAL security finding of this version's latest run, and "
            "its policy entry does not let a waiver cover CRITICAL findings (`waivers: "
            "{allow_critical: true}`): the waiver would change nothing"
        )
    if request.rule_id is not None:
        rule = known_rules()[request.rule_id]
        if rule.severity == Severity.CRITICAL:
            raise BadRequest(
                f"{rule.id} ({rule.title}) is a CRITICAL security rule, and the model's policy "
                "entry does not let a waiver cover CRITICAL findings (`waivers: "
                "{allow_critical: true}`)"
            )


def _check_rule(rule_id: str) -> None:
    rules = known_rules()
    if rule_id in rules:
        return
    close = difflib.get_close_matches(rule_id, list(rules), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise BadRequest(f"{rule_id} is not a rule the gatekeeper reports{hint}")


def _critical_findings(request: WaiverRequest, run: GateRun | None) -> list[str]:
    """The CRITICAL security findings of the run the waiver would cover (by gate or rule)."""
    if run is None or request.gate not in (None, "security"):
        return []
    security = next((r for r in run.results if r.gate == "security"), None)
    if security is None:
        return []
    return [
        str(f.get("rule_id"))
        for f in _findings(security.findings)
        if f.get("severity") == Severity.CRITICAL.value
        and (request.rule_id is None or f.get("rule_id") == request.rule_id)
    ]


def _findings(items: Iterable[object]) -> list[dict[str, object]]:
    return [f for f in items if isinstance(f, dict)]
