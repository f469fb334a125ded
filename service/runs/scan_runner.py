"""The security gate in a child process that is killed when its time budget is spent.

Why a process: the gate's engines (the walker, modelscan, bandit, detect-secrets, presidio) run
as libraries in an interpreter. The walker checks its budget as it goes, the others do not,
and a hostile file that sends one of them into a loop cannot be stopped from a thread. In a
child it can: at the budget the child is killed and the gate is `error` with the budget named
(fail closed); the worker is free for the next run.

Children are forked from a `forkserver` that imported `gates.security` once, so a scan pays
no import time (presidio alone is ~2.5 s) and the worker's own threads are never forked.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import time
from typing import Any

from gates.base import Finding, GateContext, GateResult, Severity, Status
from gates.security.config import SecurityConfig

log = logging.getLogger("gatekeeper.scan")

GATE = "security"
_GRACE_S = 5.0  # the walker's own budget check usually ends the scan first, with findings
_context: Any = None


def _forkserver() -> Any:
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["gates.security"])
        _context = context
    return _context


def _child(
    conn: multiprocessing.connection.Connection, ctx: GateContext, config: SecurityConfig
) -> None:
    from gates import security

    try:
        result: GateResult | BaseException = security.check(ctx, config)
    except BaseException as exc:  # reported to the parent, which records an error
        result = RuntimeError(f"{type(exc).__name__}: {exc}")
    conn.send(result)
    conn.close()


def run_security_gate(ctx: GateContext, config: SecurityConfig, *, budget_s: float) -> GateResult:
    """`gates.security.check` in a child, killed after `budget_s` (+ a short grace)."""
    started = time.perf_counter()
    receive, send = multiprocessing.Pipe(duplex=False)
    process = _forkserver().Process(target=_child, args=(send, ctx, config), daemon=True)
    process.start()
    send.close()
    try:
        if receive.poll(budget_s + _GRACE_S):
            try:
                outcome = receive.recv()
            except (EOFError, OSError):
                outcome = None
        else:
            outcome = "timeout"
    finally:
        if process.is_alive():
            process.kill()
        process.join(10)
        receive.close()
    elapsed = time.perf_counter() - started
    if isinstance(outcome, GateResult):
        return outcome
    if outcome == "timeout":
        log.error("security scan exceeded its budget of %.0f s; killed", budget_s)
        return _error(
            f"the security scan exceeded its time budget of {budget_s:g} s and was stopped; "
            "refusing to call the artifact safe",
            elapsed,
            limit="time",
        )
    if isinstance(outcome, BaseException):
        return _error(f"the security scan crashed: {outcome}", elapsed, limit=None)
    return _error(
        f"the security scan process died (exit code {process.exitcode}) without a result",
        elapsed,
        limit=None,
    )


def _error(message: str, elapsed: float, *, limit: str | None) -> GateResult:
    findings: tuple[Finding, ...] = ()
    if limit is not None:
        findings = (
            Finding(
                rule_id="SEC-LIMIT-001",
                severity=Severity.HIGH,
                message=message,
                evidence={"limit": limit},
            ),
        )
    return GateResult(
        gate=GATE, status=Status.ERROR, message=message, findings=findings, duration_s=elapsed
    )
