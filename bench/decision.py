"""Decision time: the Rego decision (the gatekeeper's module and five policy modules) next to
the same verdict written as Python rules, on the same gate results, in one run.

A realistic run: five gates (one failing in warn mode, one blocked and waived), 40 security
findings with evidence, three datasets, two waivers. The Rego side is what the worker does
per run (build the input document, evaluate the compiled modules, read deny / warn / waived);
the first decision after a policy change also compiles the modules, measured on its own.
Median of RUNS decisions each.

Goal (issue 13): median under 20 ms per run with the default module and five user modules.

    .venv/bin/python -m bench.decision [RUNS]
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gates.base import Finding, GateMode, GateResult, Severity, Status
from gates.drift import DriftConfig
from gates.fairness import FairnessConfig
from gates.performance import PerformanceConfig
from gates.robustness import RobustnessConfig
from service.decision import engine
from service.decision.document import DecisionContext, WaiverRecord
from service.decision.verdict import decide
from service.policy import policy_for

USER_MODULES = {
    "description.rego": 'deny contains "no description" if input.model.description == ""',
    "blocklist.rego": 'deny contains "retired name" if input.model.name in {"old-credit"}',
    "owner.rego": 'warn contains "no owner tag" if not input.model.tags.owner',
    "trainer.rego": (
        'warn contains "trainer-supplied evaluation" if {\n'
        "  some d in input.datasets\n  d.trainer_supplied\n}"
    ),
    "critical.rego": (
        "deny contains msg if {\n  some g in input.gates\n  some f in g.findings\n"
        '  f.severity == "CRITICAL"\n  msg := sprintf("critical: %s", [f.rule_id])\n}'
    ),
}
NOW = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)


def _policy(root: Path) -> Path:
    names = []
    for name, body in USER_MODULES.items():
        (root / name).write_text(f"package gatekeeper\n\nimport rego.v1\n\n{body}\n")
        names.append(name)
    policy = root / "policy.yaml"
    policy.write_text(
        "models:\n  - match: credit\n"
        "    data: {columns: {ssn: secret, email: pii}, pii_inputs: [email]}\n"
        "    gates:\n"
        "      performance: {mode: enforce}\n"
        "      fairness: {mode: enforce, sensitive_features: [gender]}\n"
        "      robustness: {mode: warn}\n"
        "      drift: {mode: enforce}\n"
        f"    rego: [{', '.join(names)}]\n"
    )
    return policy


def _results() -> list[GateResult]:
    low = tuple(
        Finding("SEC-SECRET-002", Severity.LOW, f"column {i} partly scanned",
                evidence={"column": f"c{i}", "distinct": 60_000 + i})
        for i in range(40)
    )  # fmt: skip
    fair = Finding("FAIR-DP-001", Severity.HIGH, "demographic parity ratio 0.42 < 0.8")
    return [
        GateResult("security", Status.PASS, low, message="no blocking finding"),
        GateResult("performance", Status.PASS, metrics={"accuracy": 0.91, "roc_auc": 0.95}),
        GateResult("fairness", Status.FAIL, (fair,), message="gender: parity 0.42 < 0.8"),
        GateResult("robustness", Status.FAIL, message="flip rate 0.09 > 0.05"),
        GateResult("drift", Status.PASS, metrics={"drifted_share": 0.1}),
    ]


def _context() -> DecisionContext:
    waiver = WaiverRecord(
        id="w-1", model="credit", version=3, artifact_digest=None, gate="fairness",
        rule_id=None, reason="fix next sprint", expires_at=NOW + dt.timedelta(days=3),
        created_by="alice",
    )  # fmt: skip
    datasets = [
        {"name": n, "source": f"file:///srv/{n}.csv", "origin": "policy-uri",
         "trainer_supplied": False, "sha256": "0" * 64, "rows": 3000,
         "columns": ["age", "income", "email", "gender", "approved"]}
        for n in ("training", "evaluation", "reference")
    ]  # fmt: skip
    return DecisionContext(
        model_name="credit", model_version=3, run_id="r1", description="credit risk",
        tags={"owner": "risk"}, model_inputs=["age", "income", "email"], datasets=datasets,
        artifact_digest="a" * 64, waivers=[waiver], now=NOW,
    )  # fmt: skip


def _python_rules(results: list[GateResult], modes: dict[str, GateMode]) -> tuple[str, list[str]]:
    """The peer: the same verdict as plain Python (what decide() was before Rego)."""
    waived_gates = {"fairness"}
    deny, warn = [], []
    for r in results:
        mode = modes[r.gate]
        if mode == GateMode.ENFORCE and r.blocks and r.gate not in waived_gates:
            deny.append(f"{r.gate}: {r.message}")
        elif mode == GateMode.WARN and r.status != Status.PASS:
            warn.append(f"{r.gate}: {r.message}")
    for r in results:
        for f in r.findings:
            if f.severity == Severity.CRITICAL:
                deny.append(f"critical: {f.rule_id}")
    status = "failed" if deny else ("waived" if waived_gates else "passed")
    return status, sorted(deny + warn)


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-decision-") as tmp:
        policy = policy_for("credit", _policy(Path(tmp)))
        results, context = _results(), _context()
        engine._compile.cache_clear()
        started = time.perf_counter()
        first = decide(results, policy, context)
        compile_s = time.perf_counter() - started
        assert first.status == "waived", first
        rego = []
        for _ in range(runs):
            started = time.perf_counter()
            decision = decide(results, policy, context)
            rego.append(time.perf_counter() - started)
        assert decision.status == "waived" and decision.warn, decision
        modes = {
            "security": GateMode.ENFORCE, "performance": PerformanceConfig().mode,
            "fairness": FairnessConfig().mode, "robustness": GateMode.WARN,
            "drift": DriftConfig().mode,
        }  # fmt: skip
        assert RobustnessConfig  # the configs above are the gates' own defaults
        python = []
        for _ in range(runs):
            started = time.perf_counter()
            _python_rules(results, modes)
            python.append(time.perf_counter() - started)
    rego_ms, python_ms = statistics.median(rego) * 1000, statistics.median(python) * 1000
    print("| decision | median per run (ms) | ratio to Python rules |")
    print("|---|---|---|")
    print(f"| Rego: default + 5 modules (compiled) | {rego_ms:.2f} | {rego_ms / python_ms:.0f}x |")
    print(f"| Rego: first run after a policy change (compile) | {compile_s * 1000:.1f} | - |")
    print(f"| Python rules, same verdict (peer) | {python_ms:.3f} | 1x |")
    print(f"\ngoal: median under 20 ms -> {'met' if rego_ms < 20 else 'NOT met'} ({runs} runs)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
