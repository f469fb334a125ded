"""The effective policy for a model and its digest.

This is the built-in default entry of ARCHITECTURE.md's policy file (security enforced).
The digest goes into every run's idempotency key, so changing the policy re-checks versions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

DEFAULT_GATES: dict[str, dict[str, Any]] = {
    "security": {"mode": "enforce", "fail_at": "HIGH"},
}


@dataclass(frozen=True)
class ModelPolicy:
    gates: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_GATES))

    @property
    def digest(self) -> str:
        canonical = json.dumps({"gates": self.gates}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def mode(self, gate: str) -> str:
        return str(self.gates.get(gate, {}).get("mode", "off"))


def policy_for(model_name: str) -> ModelPolicy:
    return ModelPolicy()


@dataclass(frozen=True)
class Decision:
    status: str  # passed | failed | error (run statuses)
    deny: list[str]
    warn: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "deny": self.deny, "warn": self.warn}


def decide(results: list[dict[str, Any]], policy: ModelPolicy) -> Decision:
    """Turn gate results into the run's verdict. Errors of enforced gates fail closed."""
    deny: list[str] = []
    warn: list[str] = []
    errored = False
    for result in results:
        gate, status, message = result["gate"], result["status"], result.get("message", "")
        mode = policy.mode(gate)
        if status in ("fail", "error") and mode == "enforce":
            deny.append(f"{gate}: {message}")
            errored = errored or status == "error"
        elif status in ("fail", "error", "warn"):
            warn.append(f"{gate}: {message}")
    if any(r["status"] == "fail" and policy.mode(r["gate"]) == "enforce" for r in results):
        return Decision("failed", deny, warn)
    if errored:
        return Decision("error", deny, warn)
    if not results:
        return Decision("error", ["no gate ran"], warn)
    return Decision("passed", deny, warn)
