"""fetch -> security -> (model-loading gates, later) -> decision, for one claimed run.

Pure orchestration: no SQL here. The worker records what this returns in one transaction.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gates import security
from gates.base import GateContext, GateResult, Status
from service.fetch import fetch_version
from service.policy import Decision, ModelPolicy, decide
from service.queue import ClaimedRun
from service.registry import Registry

log = logging.getLogger("gatekeeper.pipeline")

# Gates that load the model; they never run unless the security gate passed.
MODEL_LOADING_GATES = ("performance", "fairness", "robustness", "drift")


@dataclass
class PipelineOutcome:
    decision: Decision
    results: list[dict[str, Any]] = field(default_factory=list)
    artifact_digest: str | None = None
    manifest: list[dict[str, Any]] | None = None


def run_pipeline(
    claimed: ClaimedRun, *, registry: Registry, policy: ModelPolicy, scratch_root: Path
) -> PipelineOutcome:
    name, version = claimed.model_name, claimed.model_version
    # The webhook payload was only a hint: this re-read is what we trust.
    info = registry.get_version(name, version)
    scratch = scratch_root / claimed.id
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        fetched = fetch_version(registry, info.name, info.version, scratch)
        ctx = GateContext(
            artifact_dir=fetched.root,
            model_name=name,
            model_version=str(version),
            mlmodel=_read_mlmodel(fetched.root),
        )
        results = _run_gates(ctx, policy, run_id=claimed.id)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    dicts = [r.to_dict() for r in results]
    return PipelineOutcome(
        decision=decide(dicts, policy),
        results=dicts,
        artifact_digest=fetched.digest,
        manifest=fetched.manifest,
    )


def _run_gates(ctx: GateContext, policy: ModelPolicy, *, run_id: str) -> list[GateResult]:
    results = [_guarded(security.GATE_NAME, security.check, ctx, policy, run_id)]
    if results[0].status != Status.PASS:
        for gate in MODEL_LOADING_GATES:
            if policy.mode(gate) != "off":
                results.append(
                    GateResult(
                        gate=gate, status=Status.SKIPPED, message="security gate did not pass"
                    )
                )
    return results


def _guarded(
    gate: str, check: Any, ctx: GateContext, policy: ModelPolicy, run_id: str
) -> GateResult:
    """A gate that crashes is an `error` result that blocks, never an exception and a pass."""
    try:
        return check(ctx, policy.gates.get(gate, {}))
    except Exception as exc:
        log.exception("run=%s gate=%s crashed", run_id, gate)
        return GateResult(gate=gate, status=Status.ERROR, message=f"gate crashed: {exc!r}")


def _read_mlmodel(root: Path) -> dict[str, Any]:
    path = root / "MLmodel"
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}
