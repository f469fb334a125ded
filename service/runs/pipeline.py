"""fetch -> datasets -> security -> sandboxed evaluation -> decision, for one claimed run.

Pure orchestration: no SQL here. The worker records what this returns in one transaction.
The model is loaded only in the sandbox, and only after the security gate passed. The
champion is the version the gatekeeper's own record says holds the alias (the candidate
aside; never MLflow's alias, which any registry user can move), loaded only when the record
holds a passing run for exactly the files just downloaded (never on a tag), and only after
its own security scan passed in this run.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gates import drift, fairness, performance, robustness
from gates.base import GateContext, GateMode, GateResult, Status
from gates.drift import DriftConfig
from gates.evaluation import EvaluationData, ModelOutputs, Task, infer_task
from gates.mlmodel import model_inputs, read_mlmodel
from service.decision.document import DecisionContext, WaiverRecord
from service.decision.verdict import Decision, decide
from service.errors import BoundExceeded, GatekeeperError
from service.integrity.signing import SignedClaims
from service.mlflow.fetch import fetch_version
from service.mlflow.registry import Registry, VersionInfo
from service.policy import GATE_ORDER, ModelPolicy
from service.runs.datasets import LoadedDataset
from service.runs.queue import ClaimedRun
from service.runs.run_data import DataSources, RunData, resolve_run_data
from service.runs.scan_runner import run_security_gate
from service.sandbox.inputs import InputMismatch, select_model_inputs
from service.sandbox.isolation import IsolationConfig
from service.sandbox.runner import (
    GiskardRequest,
    Predictions,
    SandboxError,
    SandboxLimits,
    predict_in_sandbox,
)
from service.store.tables import PROMOTABLE_STATUSES

log = logging.getLogger("gatekeeper.pipeline")

# Gates that load the model; they never run unless the security gate passed. Drift judges
# data only and runs whatever the security gate said.
MODEL_LOADING_GATES = ("performance", "fairness", "robustness")
EVALUATION_GATES = ("performance", "fairness", "robustness")

# (model name, version) -> artifact digests of the runs the gatekeeper recorded as passed.
PassingDigests = Callable[[str, int], Collection[str]]
# (model name, candidate version) -> the version the record says holds the alias, the
# candidate aside (None: no other version holds it).
BaselineVersion = Callable[[str, int], int | None]
# (model name, version, artifact digest) -> the waivers that apply to this run now.
ActiveWaivers = Callable[[str, int, str | None], Sequence[WaiverRecord]]


def no_waivers(_name: str, _version: int, _digest: str | None) -> Sequence[WaiverRecord]:
    return ()


def no_baseline(_name: str, _version: int) -> int | None:
    return None


@dataclass
class PipelineOutcome:
    decision: Decision
    results: list[GateResult] = field(default_factory=list)
    artifact_digest: str | None = None
    manifest: list[dict[str, Any]] | None = None
    datasets: list[dict[str, Any]] = field(default_factory=list)
    sandbox: str | None = None  # how model code was contained, when a model was loaded
    signature: str | None = None  # the model-signing bundle of a promotable run's files


def run_pipeline(
    claimed: ClaimedRun,
    *,
    registry: Registry,
    policy: ModelPolicy,
    scratch_root: Path,
    passing_digests: PassingDigests,
    isolation: IsolationConfig,
    baseline: BaselineVersion = no_baseline,
    deadline_s: float = 1800.0,
    allowed_sources: tuple[str, ...] = (),
    active_waivers: ActiveWaivers = no_waivers,
    sign: Callable[[Path, SignedClaims], str] | None = None,
) -> PipelineOutcome:
    """Every stage runs within what is left of `deadline_s`; past it, BoundExceeded."""
    deadline = Deadline(time.monotonic() + deadline_s, deadline_s)
    name, version = claimed.model_name, claimed.model_version
    # The webhook payload was only a hint: this re-read is what we trust.
    info = registry.get_version(name, version)
    # read once, from the record, before anything else: champion and drift reference are the
    # same version, and nothing a registry user does during the run changes which
    champion_version = baseline(name, version)
    scratch = scratch_root / claimed.id
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        fetched = fetch_version(
            registry, info.name, info.version, scratch / "candidate",
            max_bytes=_max_artifact_bytes(policy),
        )  # fmt: skip
        mlmodel = read_mlmodel(fetched.root)
        sources = DataSources(
            registry, info, champion_version, allowed_sources, mlmodel, scratch / "data"
        )
        data = resolve_run_data(policy, sources, reference=policy.mode("drift") != GateMode.OFF)
        ctx = GateContext(
            artifact_dir=fetched.root,
            model_name=name,
            model_version=str(version),
            mlmodel=mlmodel,
            datasets={n: d.frame for n, d in data.loaded.items()},
            column_classes=dict(policy.data.columns),
        )
        stage = _security_stage(ctx, policy, claimed.id, deadline)
        results = list(stage)
        if policy.drift is not None and policy.mode("drift") != GateMode.OFF:
            results.append(_drift_gate(ctx, policy.drift, data, claimed.id))
        sandbox = None
        if stage[0].status == Status.PASS:
            deadline.remaining("the evaluation gates")
            env = _Evaluation(
                registry, info, champion_version, scratch, claimed.id, isolation,
                passing_digests, deadline,
            )  # fmt: skip
            results += _evaluation_gates(ctx, policy, data, fetched.root, env)
            sandbox = env.sandbox_used
        results = _with_unconfigured(results, policy)
        records = data.records()
        context = DecisionContext(
            model_name=name,
            model_version=version,
            run_id=info.run_id,
            description=info.description,
            tags=info.tags,
            model_inputs=_input_columns(mlmodel, records),
            datasets=records,
            artifact_digest=fetched.digest,
            waivers=active_waivers(name, version, fetched.digest),
        )
        decision = decide(results, policy, context)
        # Only what passes is signed, and it is signed from the very files the gates judged
        # (still in scratch), naming the version and the verdict: a valid signature means
        # "this version was let through, these exact files, under this policy".
        signature = None
        if sign is not None and decision.status in PROMOTABLE_STATUSES:
            claims = SignedClaims(name, version, fetched.digest, policy.digest, claimed.id)
            signature = sign(fetched.root, claims)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return PipelineOutcome(
        decision=decision,
        results=results,
        artifact_digest=fetched.digest,
        manifest=fetched.manifest,
        datasets=records,
        sandbox=sandbox,
        signature=signature,
    )


def _input_columns(mlmodel: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """The signature's input columns; without a signature every data column but the target
    counts as one (the stricter reading, as gates.mlmodel says)."""
    inputs, _ = model_inputs(mlmodel)
    if inputs is not None:
        return sorted(inputs)
    columns = {str(c) for r in records for c in r.get("columns") or [] if c != r.get("target")}
    return sorted(columns)


@dataclass(frozen=True)
class Deadline:
    """The run's whole-run deadline (time.monotonic()); each stage gets what is left."""

    at: float
    total_s: float

    def remaining(self, stage: str) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise BoundExceeded(
                f"the run exceeded its deadline of {self.total_s:g} s before {stage}"
            )
        return left


@dataclass
class _Evaluation:
    """What the evaluation stage needs besides the policy and the data."""

    registry: Registry
    info: VersionInfo
    baseline: int | None  # the record's alias holder, the candidate aside
    scratch: Path
    run_id: str
    isolation: IsolationConfig
    passing_digests: PassingDigests
    deadline: Deadline
    sandbox_used: str | None = None


def _max_artifact_bytes(policy: ModelPolicy) -> int:
    return int(policy.limits.max_artifact_gb * 1024**3)


def _with_unconfigured(results: list[GateResult], policy: ModelPolicy) -> list[GateResult]:
    """Every gate, in catalogue order: the ones that ran, and the rest as `not_configured`."""
    listed = {r.gate: r for r in results}
    for gate, why in policy.not_configured().items():
        unlisted = GateResult(gate, Status.NOT_CONFIGURED, message=f"not configured: {why}")
        listed.setdefault(gate, unlisted)
    order = {g: i for i, g in enumerate(GATE_ORDER)}
    return sorted(listed.values(), key=lambda r: order.get(r.gate, len(order)))


def _skipped(policy: ModelPolicy, why: str) -> list[GateResult]:
    return [
        GateResult(gate=g, status=Status.SKIPPED, message=f"not run: {why}")
        for g in MODEL_LOADING_GATES
        if policy.mode(g) != GateMode.OFF
    ]


def _evaluation_gates(
    ctx: GateContext, policy: ModelPolicy, data: RunData, model_dir: Path, env: _Evaluation
) -> list[GateResult]:
    enabled = [g for g in EVALUATION_GATES if policy.mode(g) != GateMode.OFF]
    if not enabled:
        return []
    evaluation = data.loaded.get("evaluation")
    if evaluation is None:
        why = data.errors.get("evaluation", "the policy names no evaluation data for this model")
        return [_error(g, f"evaluation data: {why}") for g in enabled]
    target = evaluation.target
    assert target is not None  # resolve_run_data infers it or records why it could not
    features = evaluation.frame.drop(columns=[target])
    # The model gets its own input columns only: the sensitive features and the target stay
    # here, beside its answers, for the gates. Rows that do not fit its signature are the
    # sandbox's `input` error below, naming what does not fit.
    try:
        inputs = select_model_inputs(ctx.mlmodel, features).rows
    except InputMismatch:
        inputs = features
    task = infer_task(evaluation.frame[target])
    training = data.loaded.get("training")
    probing = _plan_robustness(policy, evaluation.frame, target, inputs, training, task)
    limits = SandboxLimits(
        memory_bytes=int(policy.sandbox.memory_gb * 1024**3),
        cpu_seconds=policy.sandbox.cpu_seconds,
        wall_seconds=min(policy.sandbox.wall_seconds, env.deadline.remaining("the sandbox")),
    )
    env.sandbox_used = env.isolation.mode
    try:
        # The evaluation rows and the robustness probes, mixed, in one call (one model load);
        # then Giskard's scan in the same process, its labels sent only once the answers are
        # out of the model's reach (the runner guarantees the order).
        candidate = predict_in_sandbox(
            model_dir,
            probing.rows(inputs),
            limits=dataclasses.replace(
                limits,
                wall_seconds=min(
                    limits.wall_seconds + probing.extra_wall_s, env.deadline.remaining("Giskard")
                ),
            ),
            workdir=env.scratch / "sandbox",
            isolation=env.isolation,
            run_id=env.run_id,
            n_primary=len(inputs),
            giskard=probing.giskard,
            data_columns=evaluation.frame.columns,
        )
    except SandboxError as exc:
        return [_sandbox_error(g, "candidate model", exc) for g in enabled]
    except GatekeeperError as exc:
        return [_error(g, f"candidate model in the sandbox: {exc}") for g in enabled]
    champion, champion_version, champion_note = _champion(ctx, policy, env, features, limits)
    evaluation_data = EvaluationData(
        frame=evaluation.frame,
        target=target,
        task=task,
        candidate=_outputs(candidate),
        champion=_outputs(champion) if champion else None,
        champion_version=champion_version,
        training_frame=training.frame if training else None,
    )
    gate_ctx = dataclasses.replace(ctx, datasets={**ctx.datasets, "evaluation": evaluation_data})
    results: list[GateResult] = []
    if policy.performance is not None and policy.mode("performance") != GateMode.OFF:
        if champion_note and policy.performance.max_regression:
            results.append(
                _error("performance", f"no-regression check impossible: {champion_note}")
            )
        else:
            config = policy.performance
            results.append(
                _guarded(
                    "performance", lambda c: performance.check(c, config), gate_ctx, env.run_id
                )
            )
    if policy.fairness is not None and policy.mode("fairness") != GateMode.OFF:
        fairness_config = policy.fairness
        results.append(
            _guarded("fairness", lambda c: fairness.check(c, fairness_config), gate_ctx, env.run_id)
        )
    if policy.robustness is not None and policy.mode("robustness") != GateMode.OFF:
        results.append(
            _robustness_gate(gate_ctx, policy.robustness, probing, candidate, env.run_id)
        )
    shared = {
        "sandbox": candidate.evidence,
        "champion": champion_note or (f"version {champion_version}" if champion else "none"),
        "dataset": evaluation.record(),
    }
    return [dataclasses.replace(r, evidence={**r.evidence, **shared}) for r in results]


@dataclass(frozen=True)
class _Probing:
    """What the robustness gate adds to the candidate's sandbox call."""

    plan: robustness.ProbePlan | None = None
    giskard: GiskardRequest | None = None  # the scan's sample and labels
    extra_wall_s: float = 0.0  # the scan's budget, on top of the call's own wall time

    def rows(self, features: pd.DataFrame) -> pd.DataFrame:
        if self.plan is None or self.plan.error:
            return features
        return self.plan.batch(features)


def _plan_robustness(
    policy: ModelPolicy,
    frame: pd.DataFrame,
    target: str,
    features: pd.DataFrame,
    training: LoadedDataset | None,
    task: Task,
) -> _Probing:
    """Probe rows planned here, outside the model's reach; the Giskard scan's sample."""
    config = policy.robustness
    if config is None or policy.mode("robustness") == GateMode.OFF:
        return _Probing()
    reference = training.frame if training is not None else None
    plan = robustness.plan_probes(features, list(features.columns), config, reference, task=task)
    if not config.giskard:
        return _Probing(plan)
    # positions, not index labels: a parquet file may bring its own (even duplicate) index
    positions = list(range(len(features)))
    if len(features) > config.giskard_sample_rows:
        rng = np.random.default_rng(config.seed)
        chosen = rng.choice(len(features), size=config.giskard_sample_rows, replace=False)
        positions = sorted(int(i) for i in chosen)
    request = GiskardRequest(
        target_values=frame[target].iloc[positions].tolist(),
        task=task.value,
        cat_columns=[
            str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
        ],
        detectors=list(config.giskard_detectors),
        row_indices=positions,
        budget_s=config.giskard_time_budget_s,
    )
    return _Probing(plan, request, config.giskard_time_budget_s)


def _robustness_gate(
    ctx: GateContext,
    config: robustness.RobustnessConfig,
    probing: _Probing,
    candidate: Predictions,
    run_id: str,
) -> GateResult:
    """Judge the probes the candidate answered (mixed with the evaluation rows, in one call)
    and fold in Giskard's scan of the same process. The scan's verdict can only add warnings
    or failures: a model can hide issues from a scan that holds the labels in its process,
    it cannot make another check pass."""
    plan = probing.plan
    if plan is None:
        return _error("robustness", "no robustness probes were planned")
    if plan.error:
        return _error("robustness", plan.error)
    if candidate.extra_predictions is None:
        return _error("robustness", f"candidate model on the probe rows: {candidate.extra_error}")
    probes = ModelOutputs(predictions=np.asarray(candidate.extra_predictions))
    data = robustness.RobustnessData(plan, probes)
    gate_ctx = dataclasses.replace(ctx, datasets={**ctx.datasets, "robustness": data})
    result = _guarded("robustness", lambda c: robustness.check(c, config), gate_ctx, run_id)
    if probing.giskard is None:
        return result
    scan = candidate.giskard or robustness.GiskardScan(error="the sandbox returned no report")
    merged = robustness.merge(result, scan, config)
    if not candidate.diagnostics:
        return merged
    # what the scan's exception said: for admins, like everything the model's process wrote
    diagnostics = {**(merged.diagnostics or {}), **candidate.diagnostics}
    return dataclasses.replace(merged, diagnostics=diagnostics)


def _champion(
    ctx: GateContext,
    policy: ModelPolicy,
    env: _Evaluation,
    features: Any,
    limits: SandboxLimits,
) -> tuple[Predictions | None, str | None, str | None]:
    """The baseline's predictions on the same rows, or why there are none.

    The baseline is the version the gatekeeper's record says holds the alias (the candidate
    aside), never MLflow's alias. Loaded only if (1) the gatekeeper's database holds a
    passing run of that version whose artifact digest equals the digest of the files
    downloaded now, and (2) those files pass the security gate under this policy now. A
    `gatekeeper.status` tag proves nothing. A baseline that cannot be used is a reason (the
    regression check errors), never "no champion".
    """
    info = env.info
    holder = env.baseline
    if holder is None:
        return None, None, None
    try:
        fetched = fetch_version(
            env.registry, info.name, holder, env.scratch / "champion",
            max_bytes=_max_artifact_bytes(policy),
        )  # fmt: skip
    except GatekeeperError as exc:
        return None, str(holder), f"champion v{holder} could not be downloaded: {exc}"
    trusted = env.passing_digests(info.name, int(holder))
    if fetched.digest not in trusted:
        log.warning(
            "run=%s champion v%s not loaded: no passing run on record for digest %s",
            env.run_id,
            holder,
            fetched.digest,
        )
        return (
            None,
            str(holder),
            (
                f"champion v{holder} was not loaded: the gatekeeper has no passing run on record "
                f"for its artifact (sha256 {fetched.digest[:16]}...); tags are not trusted"
            ),
        )
    champion_ctx = dataclasses.replace(
        ctx,
        artifact_dir=fetched.root,
        model_version=str(holder),
        mlmodel=read_mlmodel(fetched.root),
    )
    scan = _scan(champion_ctx, policy, env.deadline.remaining("the champion's scan"))
    if scan.status != Status.PASS:
        return (
            None,
            str(holder),
            (f"champion v{holder} was not loaded: its security scan did not pass ({scan.message})"),
        )
    try:
        limits = dataclasses.replace(
            limits, wall_seconds=min(limits.wall_seconds, env.deadline.remaining("the champion"))
        )
        predictions = predict_in_sandbox(
            fetched.root,
            features,
            limits=limits,
            workdir=env.scratch / "sandbox-champion",
            isolation=env.isolation,
            run_id=env.run_id,
        )
    except GatekeeperError as exc:
        return None, str(holder), f"champion v{holder} could not be evaluated: {exc}"
    return predictions, str(holder), None


def _drift_gate(ctx: GateContext, config: DriftConfig, data: RunData, run_id: str) -> GateResult:
    """Candidate training data against the reference; no model code runs."""
    training = data.loaded.get("training")
    if training is None:
        why = data.errors.get(
            "training", "no training data: the policy names none and the run logged none"
        )
        return _error("drift", f"training data: {why}")
    datasets: dict[str, Any] = {drift.TRAINING_KEY: training.frame}
    if "reference" in data.errors:
        return _error("drift", f"reference data: {data.errors['reference']}")
    reference = data.loaded.get("reference")
    if reference is not None:
        datasets[drift.REFERENCE_KEY] = reference.frame
    evaluation = data.loaded.get("evaluation")
    if evaluation is not None:
        datasets[drift.EVALUATION_FRAME_KEY] = evaluation.frame
    gate_ctx = dataclasses.replace(ctx, datasets=datasets)
    result = _guarded("drift", lambda c: drift.check(c, config), gate_ctx, run_id)
    sources = {n: d.record() for n, d in data.loaded.items() if n in ("training", "reference")}
    evidence = {**result.evidence, "datasets": sources}
    if reference is None and data.no_reference:
        evidence["no_reference"] = data.no_reference
    return dataclasses.replace(result, evidence=evidence)


def _outputs(p: Predictions) -> ModelOutputs:
    return ModelOutputs(
        predictions=np.asarray(p.predictions),
        scores=np.asarray(p.scores, dtype=float) if p.scores is not None else None,
        classes=p.classes,
        scores_error=p.scores_error,
    )


def _error(gate: str, message: str) -> GateResult:
    return GateResult(gate=gate, status=Status.ERROR, message=message)


def _sandbox_error(gate: str, who: str, exc: SandboxError) -> GateResult:
    """A fixed kind and stage and classified, row-free reasons for everyone; what the model
    wrote for admins only."""
    evidence = {"sandbox": exc.evidence, "sandbox_error": exc.kind, "stage": exc.stage}
    return GateResult(
        gate=gate,
        status=Status.ERROR,
        message=f"{who}: {exc.message}",
        evidence={**evidence, "reasons": list(exc.reasons)},
        diagnostics=exc.diagnostics,
    )


def _scan(ctx: GateContext, policy: ModelPolicy, left_s: float) -> GateResult:
    """The security gate in a child process killed at its budget (or the run's deadline)."""
    budget = min(policy.security.time_budget_s, left_s)
    config = policy.security.model_copy(update={"time_budget_s": budget})
    return run_security_gate(ctx, config, budget_s=budget)


def _security_stage(
    ctx: GateContext, policy: ModelPolicy, run_id: str, deadline: Deadline
) -> list[GateResult]:
    """The security gate and, when it did not pass, every enabled model-loading gate as
    `skipped`: a model that may be malicious is never loaded, not even in the sandbox."""
    result = _scan(ctx, policy, deadline.remaining("the security scan"))
    if result.status == Status.ERROR:
        log.warning("run=%s security gate error: %s", run_id, result.message)
    if result.status == Status.PASS:
        return [result]
    return [result, *_skipped(policy, "the security gate did not pass; the model is never loaded")]


def _guarded(
    gate: str, check: Callable[[GateContext], GateResult], ctx: GateContext, run_id: str
) -> GateResult:
    """A gate that crashes is an `error` result that blocks, never an exception and a pass."""
    try:
        return check(ctx)
    except Exception as exc:
        log.exception("run=%s gate=%s crashed", run_id, gate)
        return GateResult(gate=gate, status=Status.ERROR, message=f"gate crashed: {exc!r}")
