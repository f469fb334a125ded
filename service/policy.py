"""Policy file: which data each model is judged on and how each gate is configured.

YAML (ARCHITECTURE.md, "Policy file"), validated with pydantic. A bad policy stops
`gatekeeper serve` with an error that names the key and the line. The first `models` entry
whose `match` glob fits the registered model name wins; a model that matches none gets the
default entry (security enforced, the other gates off). Gates not listed in an entry run with
their defaults when their data is configured: performance and fairness need
`data.evaluation`, fairness also `data.sensitive_features`.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.errors import ConfigError

Mode = Literal["enforce", "warn", "off"]
ClassificationMetric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
RegressionMetric = Literal["rmse", "mae", "r2"]
Metric = ClassificationMetric | RegressionMetric


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    uri: str | None = None
    artifact_path: str | None = None
    from_run: bool = False
    from_alias: bool = False
    target: str | None = None
    format: Literal["csv", "parquet"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        sources = [self.uri is not None, self.artifact_path is not None, self.from_run,
                   self.from_alias]  # fmt: skip
        if sum(sources) != 1:
            raise ValueError("give exactly one of uri, artifact_path, from_run, from_alias")
        return self


class DataConfig(_Strict):
    evaluation: DatasetSpec | None = None
    training: DatasetSpec | None = None
    reference: DatasetSpec | None = None
    sensitive_features: list[str] = Field(default_factory=list)
    columns: dict[str, Literal["pii", "secret", "public"]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _evaluation_has_target(self) -> DataConfig:
        if self.evaluation is not None and not self.evaluation.target:
            raise ValueError("data.evaluation needs a target column")
        return self


class SecurityGate(_Strict):
    mode: Mode = "enforce"
    fail_at: Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"] = "HIGH"
    allow_code: bool = False
    allow_callables: list[str] = Field(default_factory=list)
    pii_threshold: float = Field(0.01, ge=0, le=1)
    modelscan: bool = True
    # every engine (walker, modelscan, bandit, detect-secrets, presidio) runs within it: the
    # scan is a child process killed when the budget is spent (service/scan_runner.py)
    time_budget_s: float = Field(300.0, gt=0, le=24 * 3600)


class LimitsConfig(_Strict):
    """Bounds on what one run may fetch and hold, checked before the bytes are read."""

    max_artifact_gb: float = Field(20.0, gt=0)  # sum of list_artifacts, before download
    max_dataset_gb: float = Field(2.0, gt=0)  # bytes read, and uncompressed parquet size
    max_dataset_rows: int = Field(5_000_000, ge=1)  # parquet metadata / CSV rows


class PerformanceGate(_Strict):
    mode: Mode = "enforce"
    min: dict[Metric, float] = Field(default_factory=dict)
    max: dict[Metric, float] = Field(default_factory=dict)
    max_regression: dict[Metric, float] = Field(default_factory=dict)


class FairnessGate(_Strict):
    mode: Mode = "enforce"
    demographic_parity_ratio: float = Field(0.8, ge=0, le=1)
    equalized_odds_difference: float = Field(0.1, ge=0, le=1)
    min_group_size: int = Field(30, ge=1)
    intersections: list[list[str]] = Field(default_factory=list)
    bootstrap: int = Field(200, ge=0, le=10_000)
    max_error_ratio: float = Field(1.25, ge=1)
    seed: int = 0


class OtherGate(_Strict):
    """Robustness and drift: configured here, built in later releases."""

    mode: Mode = "off"
    model_config = ConfigDict(extra="allow")


class SandboxConfig(_Strict):
    memory_gb: float = Field(4.0, gt=0, le=256)
    cpu_seconds: int = Field(300, ge=1)
    wall_seconds: float = Field(600.0, gt=0)


class GatesConfig(_Strict):
    security: SecurityGate = Field(default_factory=SecurityGate)
    performance: PerformanceGate | None = None
    fairness: FairnessGate | None = None
    robustness: OtherGate | None = None
    drift: OtherGate | None = None


class ModelEntry(_Strict):
    match: str
    data: DataConfig = Field(default_factory=DataConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    rego: list[str] = Field(default_factory=list)


class PolicyFile(_Strict):
    models: list[ModelEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class ModelPolicy:
    """The effective policy for one model: gate configs as plain dicts, plus its data."""

    gates: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"security": SecurityGate().model_dump()}
    )
    data: DataConfig = field(default_factory=DataConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    entry: str = "default"

    @property
    def digest(self) -> str:
        canonical = json.dumps(
            {
                "gates": self.gates,
                "data": self.data.model_dump(),
                "sandbox": self.sandbox.model_dump(),
                "limits": self.limits.model_dump(),
            },
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def mode(self, gate: str) -> str:
        return str(self.gates.get(gate, {}).get("mode", "off"))

    @classmethod
    def from_entry(cls, entry: ModelEntry) -> ModelPolicy:
        gates: dict[str, dict[str, Any]] = {"security": entry.gates.security.model_dump()}
        has_eval = entry.data.evaluation is not None
        performance = entry.gates.performance or (PerformanceGate() if has_eval else None)
        if performance is not None:
            gates["performance"] = performance.model_dump()
        fairness = entry.gates.fairness or (
            FairnessGate() if has_eval and entry.data.sensitive_features else None
        )
        if fairness is not None:
            gates["fairness"] = {
                **fairness.model_dump(),
                "sensitive_features": list(entry.data.sensitive_features),
            }
        for name in ("robustness", "drift"):
            other = getattr(entry.gates, name)
            if other is not None:
                gates[name] = other.model_dump()
        return cls(
            gates=gates,
            data=entry.data,
            sandbox=entry.sandbox,
            limits=entry.limits,
            entry=entry.match,
        )


# -- loading ---------------------------------------------------------------------------------


def parse_policy(text: str, source: str = "<policy>") -> PolicyFile:
    """Validate a policy document; errors name the key path and the line."""
    try:
        root = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{line}: not valid YAML: {exc}") from exc
    try:
        return PolicyFile.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = [p for p in error["loc"] if not (isinstance(p, str) and "[" in p)]
            line = _line_of(root, loc)
            key = _dotted(loc)
            problems.append(f"{source}:{line}: {key}: {error['msg']}")
        raise ConfigError("invalid policy:\n  " + "\n  ".join(problems)) from exc


def load_policy_file(path: Path) -> PolicyFile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc}") from exc
    return parse_policy(text, str(path))


@functools.cache
def _cached(path: str, mtime_ns: int) -> PolicyFile:
    return load_policy_file(Path(path))


def policy_for(model_name: str, policy_path: Path | None = None) -> ModelPolicy:
    if policy_path is None:
        return ModelPolicy()
    document = _cached(str(policy_path), policy_path.stat().st_mtime_ns)
    for entry in document.models:
        if fnmatch.fnmatchcase(model_name, entry.match):
            return ModelPolicy.from_entry(entry)
    return ModelPolicy()


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int:
    """1-based line of the deepest YAML node along `loc` (the key, when the value is missing)."""
    line = (node.start_mark.line + 1) if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(
                (
                    (k, v)
                    for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value == part
                ),
                None,
            )
            if match is None:
                return line
            line = match[0].start_mark.line + 1
            node = match[1]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# -- decision ------------------------------------------------------------------------------


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
