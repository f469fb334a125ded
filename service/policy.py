"""Policy file: which data each model is judged on and how each gate is configured.

YAML (the README's "Policy file" section), validated with pydantic. Booleans are read as YAML 1.2
reads them (`true` / `false`): YAML 1.1 would turn an unquoted `off` into `false`, and `mode:
off` (or `trigger_mode: off`, `skew_mode: off`) would be refused. A bad policy stops
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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gates.base import GateMode
from gates.drift import DriftConfig
from gates.fairness import FairnessConfig
from gates.performance import PerformanceConfig
from gates.robustness import RobustnessConfig
from gates.security.config import SecurityConfig
from service.decision.engine import RegoModule, check_modules
from service.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class FromRun(_Strict):
    """A dataset the run logged with `mlflow.log_input`, picked by its context tag."""

    context: str = Field(min_length=1)


class DatasetSpec(_Strict):
    """Where one dataset comes from: exactly one of `uri`, `artifact_path`, `from_run`,
    `from_alias`."""

    uri: str | None = None
    """`file://`, a path, `http(s)://` or `s3://` (written by the operator: trusted)."""

    artifact_path: str | None = None
    """An artifact of the candidate's MLflow run."""

    from_run: bool | FromRun = False
    """`true`: the dataset the candidate's run logged under the usual context (`training`;
    for evaluation `evaluation`, `eval`, `test`, `validation`); `{context: NAME}` picks one."""

    from_alias: bool = False
    """The training data of the version the gatekeeper's record puts the alias on (the
    candidate aside; never MLflow's alias, which any registry user can move), as its own run
    logged it."""

    target: str | None = None
    """The target column; default: the one column that is not a model input (signature)."""

    format: Literal["csv", "parquet"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        sources = [self.uri is not None, self.artifact_path is not None,
                   self.from_run is not False, self.from_alias]  # fmt: skip
        if sum(sources) != 1:
            raise ValueError("give exactly one of uri, artifact_path, from_run, from_alias")
        return self


class DataConfig(_Strict):
    evaluation: DatasetSpec | None = None
    training: DatasetSpec | None = None
    reference: DatasetSpec | None = None
    sensitive_features: list[str] = Field(default_factory=list)
    columns: dict[str, Literal["pii", "secret", "public"]] = Field(default_factory=dict)
    """Data classification. A `secret` column may be neither a model input nor in the
    training data (DATA-SECRET-INPUT, DATA-SECRET-TRAINING); a `pii` column may be a model
    input only when listed in `pii_inputs` (DATA-PII-INPUT); a waiver on the rule id lets
    one through."""

    pii_inputs: list[str] = Field(default_factory=list)
    """`pii` columns the model may take as inputs."""

    @property
    def names_any(self) -> bool:
        """Whether the entry names any dataset; when not, what the run logged is used."""
        return any(s is not None for s in (self.evaluation, self.training, self.reference))


class LimitsConfig(_Strict):
    """Bounds on what one run may fetch and hold, checked before the bytes are read."""

    max_artifact_gb: float = Field(20.0, gt=0)
    """The artifact's total size, from MLflow's `list_artifacts` before any download."""

    max_dataset_gb: float = Field(2.0, gt=0)
    """Bytes read for one dataset, and its decoded size from parquet metadata."""

    max_dataset_rows: int = Field(5_000_000, ge=1)
    """Rows of one dataset, from parquet metadata or the CSV before it is used."""


class SandboxConfig(_Strict):
    """Resources of the sandbox that loads the model and predicts."""

    memory_gb: float = Field(4.0, gt=0, le=256)
    """Address space of the sandboxed process (RLIMIT_AS)."""

    cpu_seconds: int = Field(300, ge=1)
    """CPU time of the sandboxed process (RLIMIT_CPU)."""

    wall_seconds: float = Field(600.0, gt=0)
    """Wall-clock time before the sandbox is killed (within the run's deadline)."""


class GatesConfig(_Strict):
    """`gates:` of a policy entry: each gate's own configuration model (gates/)."""

    security: SecurityConfig = Field(default_factory=SecurityConfig)
    performance: PerformanceConfig | None = None
    fairness: FairnessConfig | None = None
    robustness: RobustnessConfig | None = None
    drift: DriftConfig | None = None


class WaiverPolicy(_Strict):
    """What waivers may cover for the models of this entry."""

    allow_critical: bool = False
    """Let a waiver cover a CRITICAL security finding (a dangerous callable); off, such a
    finding blocks whatever waiver exists."""


class ModelEntry(_Strict):
    match: str
    data: DataConfig = Field(default_factory=DataConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    waivers: WaiverPolicy = Field(default_factory=WaiverPolicy)
    rego: list[str] = Field(default_factory=list)
    """Rego modules (`package gatekeeper`, `deny`/`warn` rules), paths relative to the
    policy file."""


class PolicyFile(_Strict):
    models: list[ModelEntry] = Field(default_factory=list)


GATE_ORDER = ("security", "performance", "fairness", "robustness", "drift")

# what a policy entry lacks when a gate does not run (ModelPolicy.from_entry's rules)
_UNCONFIGURED_BECAUSE = {
    "security": "no gates.security",
    "performance": "no data.evaluation and no gates.performance",
    "fairness": "no data.evaluation with data.sensitive_features, and no gates.fairness",
    "robustness": "no gates.robustness",
    "drift": "no gates.drift",
}


@dataclass(frozen=True)
class ModelPolicy:
    """The effective policy for one model: the gates that run, typed, and their data.

    `performance` and `fairness` are None when they do not run for this model (not listed,
    and no data configured for them)."""

    security: SecurityConfig = field(default_factory=SecurityConfig)
    performance: PerformanceConfig | None = None
    fairness: FairnessConfig | None = None
    robustness: RobustnessConfig | None = None
    drift: DriftConfig | None = None
    data: DataConfig = field(default_factory=DataConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    waivers: WaiverPolicy = field(default_factory=WaiverPolicy)
    rego_modules: tuple[RegoModule, ...] = ()
    entry: str = "default"

    def not_configured(self) -> dict[str, str]:
        """Each gate that does not run for this model, with why in the policy's words: every
        run lists it, so no one reads a security-only pass as a full one."""
        configs = self.gate_configs()
        why: dict[str, str] = {}
        for gate in GATE_ORDER:
            if gate in configs and self.mode(gate) != GateMode.OFF:
                continue
            why[gate] = "mode: off" if gate in configs else _UNCONFIGURED_BECAUSE[gate]
        return why

    def gate_configs(self) -> dict[str, BaseModel]:
        """Every configured gate by name, in the order they run."""
        gates: dict[str, BaseModel | None] = {
            "security": self.security,
            "performance": self.performance,
            "fairness": self.fairness,
            "robustness": self.robustness,
            "drift": self.drift,
        }
        return {name: config for name, config in gates.items() if config is not None}

    @property
    def digest(self) -> str:
        canonical = json.dumps(
            {
                "gates": {n: c.model_dump(mode="json") for n, c in self.gate_configs().items()},
                "data": self.data.model_dump(mode="json"),
                "sandbox": self.sandbox.model_dump(mode="json"),
                "limits": self.limits.model_dump(mode="json"),
                "waivers": self.waivers.model_dump(mode="json"),
                # the decision rules are policy too: a changed module is a new policy
                "rego": [[m.path, m.text] for m in self.rego_modules],
            },
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def mode(self, gate: str) -> GateMode:
        config = self.gate_configs().get(gate)
        return GateMode(getattr(config, "mode", GateMode.OFF))

    @classmethod
    def from_entry(cls, entry: ModelEntry, base_dir: Path | None = None) -> ModelPolicy:
        has_eval = entry.data.evaluation is not None
        performance = entry.gates.performance or (PerformanceConfig() if has_eval else None)
        sensitive = list(entry.data.sensitive_features)
        fairness = entry.gates.fairness or (FairnessConfig() if has_eval and sensitive else None)
        if fairness is not None and not fairness.sensitive_features:
            fairness = fairness.model_copy(update={"sensitive_features": sensitive})
        return cls(
            security=entry.gates.security,
            performance=performance,
            fairness=fairness,
            robustness=entry.gates.robustness,
            drift=entry.gates.drift,
            data=entry.data,
            sandbox=entry.sandbox,
            limits=entry.limits,
            waivers=entry.waivers,
            rego_modules=tuple(
                RegoModule.read((base_dir or Path.cwd()) / name) for name in entry.rego
            ),
            entry=entry.match,
        )


# -- loading ---------------------------------------------------------------------------------

_BOOL_TAG = "tag:yaml.org,2002:bool"
# What YAML 1.1 also reads as a boolean and YAML 1.2 reads as a string.
_YAML11_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})


class PolicyLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans: only `true` and `false` (any case
    PyYAML's YAML 1.1 resolver takes) are booleans; `on`, `off`, `yes`, `no` stay strings, so
    the `off` of a gate's mode is the mode. The rest of the resolution (numbers, null) is
    PyYAML's. PyYAML, and not a YAML 1.2 library, because the nodes it composes carry the
    marks `_line_of` turns into the line of a bad key."""


PolicyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
PolicyLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _compose(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=PolicyLoader)


def parse_policy(text: str, source: str = "<policy>") -> PolicyFile:
    """Validate a policy document; errors name the key path and the line."""
    try:
        root = _compose(text)
        raw = yaml.load(text, Loader=PolicyLoader)  # a SafeLoader: builds no objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{line}: not valid YAML: {exc}") from exc
    try:
        return PolicyFile.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc: list[str | int] = [
                p for p in error["loc"] if not (isinstance(p, str) and "[" in p)
            ]
            at_line = _line_of(root, loc)
            problems.append(f"{source}:{at_line}: {_dotted(loc)}: {_message(error)}")
        raise ConfigError("invalid policy:\n  " + "\n  ".join(problems)) from exc


def _message(error: Any) -> str:
    """Pydantic's message; for a YAML 1.1 boolean spelling where a boolean is wanted, what
    to write instead (this file reads `no` as the string "no")."""
    value = error.get("input")
    if (
        error.get("type") == "bool_type"
        and isinstance(value, str)
        and value.lower() in _YAML11_BOOLEANS
    ):
        return f"{error['msg']} (write true or false: {value!r} is a string in YAML 1.2)"
    return str(error["msg"])


def load_policy_file(path: Path) -> PolicyFile:
    """Read, validate and compile: a bad key, value or Rego module is a ConfigError naming
    the file and line (what `gatekeeper serve` refuses to start on)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc}") from exc
    document = parse_policy(text, str(path))
    root = _compose(text)
    for index, entry in enumerate(document.models):
        for position, name in enumerate(entry.rego):
            module_path = path.parent / name
            if not module_path.is_file():
                line = _line_of(root, ["models", index, "rego", position])
                raise ConfigError(
                    f"{path}:{line}: models[{index}].rego[{position}]: Rego module "
                    f"{module_path} does not exist"
                )
        check_modules(ModelPolicy.from_entry(entry, path.parent).rego_modules)
    return document


@functools.cache
def _cached(path: str, mtime_ns: int) -> PolicyFile:
    return load_policy_file(Path(path))


def policy_for(model_name: str, policy_path: Path | None = None) -> ModelPolicy:
    if policy_path is None:
        return ModelPolicy()
    document = _cached(str(policy_path), policy_path.stat().st_mtime_ns)
    for entry in document.models:
        if fnmatch.fnmatchcase(model_name, entry.match):
            return ModelPolicy.from_entry(entry, policy_path.parent)
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
