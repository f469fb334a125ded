"""The run's verdict from the Rego rules' `deny`, `warn` and `waived`.

No `deny`: `passed`, or `waived` when a gate blocked and a waiver let it through. A `deny`:
`failed`, or `error` when every denied gate errored (nothing failed, something could not be
judged). Rules that do not compile or fail at run time: `error`, never a pass.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gates.base import GateMode, GateResult, Status
from service.decision.document import DecisionContext, build_input
from service.decision.engine import RegoError, RegoModule, evaluate
from service.vocabulary import RunStatus

if TYPE_CHECKING:
    from service.policy import ModelPolicy


@dataclass(frozen=True)
class Decision:
    status: RunStatus  # passed | waived | failed | error
    deny: list[str]
    warn: list[str]
    waived: list[dict[str, Any]] = field(default_factory=list)  # {"gate", "waivers", "message"}
    gates: dict[str, str] = field(default_factory=dict)  # the `gatekeeper.gate.<g>` tag values
    input: dict[str, Any] | None = None  # what the rules saw, for replay

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "deny": self.deny,
            "warn": self.warn,
            "waived": self.waived,
            "gates": self.gates,
            "input": self.input,
        }


def decide(
    results: Sequence[GateResult], policy: ModelPolicy, context: DecisionContext | None = None
) -> Decision:
    """Gate results, the context and the policy's modules -> the run's verdict."""
    document = build_input(
        results,
        {r.gate: policy.mode(r.gate).value for r in results},
        context or DecisionContext(),
        entry=policy.entry,
        policy_digest=policy.digest,
        columns=dict(policy.data.columns),
        pii_inputs=policy.data.pii_inputs,
        allow_critical=policy.waivers.allow_critical,
    )
    return decide_document(document, policy.rego_modules)


def replay(document: dict[str, Any], policy: ModelPolicy) -> Decision:
    """A stored decision input judged again under `policy`: its gate modes, data
    classification, waiver rules and Rego modules; the gate results and waivers as recorded."""
    document = copy.deepcopy(document)
    for gate in document.get("gates", []):
        gate["mode"] = policy.mode(str(gate.get("name"))).value
        if gate.get("status") == Status.NOT_CONFIGURED and gate["mode"] != GateMode.OFF:
            # the record has no result for a gate this policy adds: it cannot be judged from
            # the record, and an unjudged gate never passes
            gate["status"] = Status.ERROR.value
            gate["message"] = "not run in the recorded run (not configured then); re-run it"
    document["data"] = {
        "columns": dict(policy.data.columns),
        "pii_inputs": list(policy.data.pii_inputs),
    }
    document["policy"] = {
        "entry": policy.entry,
        "digest": policy.digest,
        "waivers": {"allow_critical": policy.waivers.allow_critical},
    }
    return decide_document(document, policy.rego_modules)


def decide_document(document: dict[str, Any], modules: tuple[RegoModule, ...]) -> Decision:
    gates = document.get("gates", [])
    try:
        outcome = evaluate(modules, document)
    except RegoError as exc:
        return Decision(
            RunStatus.ERROR, [f"decision: {exc}"], [], gates=_tags(gates, []), input=document
        )
    waived_gates = {entry["gate"] for entry in outcome.waived}
    waived_warnings = [
        f"{e['gate']}: waived ({', '.join(e['waivers'])}): {e['message']}" for e in outcome.waived
    ]
    warn = sorted(outcome.warn + waived_warnings)
    tags = _tags(gates, waived_gates)
    if outcome.deny:
        denied = [
            g for g in gates
            if g.get("mode") == "enforce" and g.get("status") in (Status.FAIL, Status.ERROR)
            and g.get("name") not in waived_gates
        ]  # fmt: skip
        only_errors = bool(denied) and all(g.get("status") == Status.ERROR for g in denied)
        ran = [g for g in gates if g.get("status") != Status.NOT_CONFIGURED]
        status = RunStatus.ERROR if only_errors or not ran else RunStatus.FAILED
        return Decision(status, outcome.deny, warn, outcome.waived, tags, document)
    status = RunStatus.WAIVED if outcome.waived else RunStatus.PASSED
    return Decision(status, [], warn, outcome.waived, tags, document)


def _tags(gates: list[dict[str, Any]], waived: set[str] | list[str]) -> dict[str, str]:
    """What each gate's tag says: its status, `warn` for a gate in warn mode that did not
    pass, `waived` for a blocking gate a waiver let through."""
    tags = {}
    for gate in gates:
        name, status = str(gate.get("name")), str(gate.get("status"))
        if name in waived:
            tags[name] = "waived"
        elif gate.get("mode") == "warn" and status in (Status.FAIL, Status.ERROR):
            tags[name] = Status.WARN.value
        else:
            tags[name] = status
    return tags


def changed_messages(recorded: dict[str, Any], replayed: Decision) -> list[str]:
    """`+ deny: ...` / `- warn: ...`: what the replay adds to or drops from the record."""
    lines = []
    for kind, now in (("deny", replayed.deny), ("warn", replayed.warn)):
        before = [str(m) for m in recorded.get(kind) or []]
        lines += [f"+ {kind}: {m}" for m in now if m not in before]
        lines += [f"- {kind}: {m}" for m in before if m not in now]
    return lines or ["(no deny or warn message changes)"]
