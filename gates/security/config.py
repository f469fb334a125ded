"""The security gate's configuration: `gates.security` in the policy file, with its defaults."""

from __future__ import annotations

from pydantic import Field

from gates.base import GateConfig, Severity


class SecurityConfig(GateConfig):
    fail_at: Severity = Severity.HIGH
    """Lowest finding severity that fails the gate (CRITICAL, HIGH, MEDIUM or LOW)."""

    allow_code: bool = False
    """Accept code the model ships (pyfunc `code_paths`, models-from-code, marshalled code):
    reported at LOW instead of HIGH. The model then runs only in the sandbox."""

    allow_callables: list[str] = Field(default_factory=list)
    """Extra `module.name` callables (or `module.*`) a pickle may call, beyond the built-in
    list of library factories."""

    pii_threshold: float = Field(0.01, strict=True, ge=0, le=1)
    """Share of a text column's sampled values that must look like PII before it is reported."""

    modelscan: bool = True
    """Also run modelscan as a second opinion (its findings are reported beside ours)."""

    time_budget_s: float = Field(300.0, strict=True, gt=0, le=24 * 3600)
    """Seconds for the whole scan (every engine); the scan process is killed when spent and
    the gate is an `error`."""
