"""Which rows a run is judged on: what the policy names, else what the run logged.

Evaluation and training data come from the policy (`uri`, `artifact_path`, `from_run`) or,
when the policy entry names no data at all, from the datasets the candidate's run logged with
`mlflow.log_input` (context `training`; `evaluation`, `eval`, `test` or `validation`). The
drift reference is the policy's `data.reference`, else the training data the run of the
baseline version logged: the version the gatekeeper's record says holds the alias (never
MLflow's alias, which any registry user can move). A dataset that cannot be had is
recorded with its reason: the gates that need it then `error` (fail closed), naming it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.errors import GatekeeperError
from service.mlflow.logged_data import LoggedDataset
from service.mlflow.registry import Registry, VersionInfo
from service.policy import DatasetSpec, FromRun, ModelPolicy
from service.runs.datasets import (
    EVALUATION_CONTEXTS,
    TRAINING_CONTEXTS,
    DatasetBounds,
    DatasetError,
    LoadedDataset,
    Origin,
    infer_target,
    load_dataset,
    load_logged_dataset,
    pick_logged,
)

CONTEXTS = {"evaluation": EVALUATION_CONTEXTS, "training": TRAINING_CONTEXTS}


@dataclass
class RunData:
    loaded: dict[str, LoadedDataset] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # why there is no drift reference when that is simply the state of the registry (no
    # other version holds the alias): drift is `skipped`, not `error`
    no_reference: str | None = None

    def records(self) -> list[dict[str, Any]]:
        return [d.record() for d in self.loaded.values()] + [
            {"name": n, "error": e} for n, e in self.errors.items()
        ]


@dataclass(frozen=True)
class DataSources:
    """What resolving a run's data needs besides the policy."""

    registry: Registry
    info: VersionInfo
    baseline: int | None  # the record's alias holder (the candidate aside); None: no holder
    allowed_sources: tuple[str, ...]
    mlmodel: dict[str, Any]
    scratch: Path


def resolve_run_data(policy: ModelPolicy, sources: DataSources, *, reference: bool) -> RunData:
    """Evaluation and training data for the candidate; the drift reference when asked."""
    data = RunData()
    bounds = DatasetBounds.from_policy(policy.limits)
    logged = _Logged(sources)
    for name in ("evaluation", "training"):
        spec = getattr(policy.data, name)
        if spec is None and not policy.data.names_any:
            # nothing named: what the run logged, when it logged it
            spec = DatasetSpec(from_run=True) if logged.candidate_has(CONTEXTS[name]) else None
        if spec is None:
            continue
        try:
            loaded = _load(name, spec, sources, logged, bounds)
            if name == "evaluation":
                loaded = loaded.with_target(
                    infer_target(loaded.frame, spec.target, sources.mlmodel)
                )
            data.loaded[name] = loaded
        except GatekeeperError as exc:
            data.errors[name] = str(exc)
    if reference:
        spec = policy.data.reference or DatasetSpec(from_alias=True)
        try:
            if spec.from_alias:  # the holder's training data, found as the candidate's is
                training = policy.data.training or DatasetSpec(from_run=True)
                data.loaded["reference"] = _from_alias_holder(sources, training, bounds)
            else:
                data.loaded["reference"] = _load("reference", spec, sources, logged, bounds)
        except NoReference as exc:
            data.no_reference = str(exc)
        except GatekeeperError as exc:
            data.errors["reference"] = str(exc)
    return data


class _Logged:
    """The candidate's logged datasets, read from MLflow once and only when needed."""

    def __init__(self, sources: DataSources) -> None:
        self._sources = sources
        self._candidate: list[LoggedDataset] | None = None

    def candidate(self) -> list[LoggedDataset]:
        if self._candidate is None:
            run_id = self._sources.info.run_id
            self._candidate = self._sources.registry.logged_datasets(run_id) if run_id else []
        return self._candidate

    def candidate_has(self, contexts: tuple[str, ...]) -> bool:
        return pick_logged(self.candidate(), contexts) is not None


def _load(
    name: str, spec: DatasetSpec, sources: DataSources, logged: _Logged, bounds: DatasetBounds
) -> LoadedDataset:
    if spec.from_alias:
        raise DatasetError(f"{name} data: from_alias names the drift reference only")
    if spec.from_run is not False:
        contexts = (
            (spec.from_run.context,)
            if isinstance(spec.from_run, FromRun)
            else CONTEXTS.get(name, TRAINING_CONTEXTS)
        )
        found = pick_logged(logged.candidate(), contexts)
        if found is None:
            raise DatasetError(
                f"{name} data: the candidate's run logged no dataset with context "
                f"{' / '.join(contexts)} (mlflow.log_input(..., context=...))"
            )
        return load_logged_dataset(
            name, found, allowed_sources=sources.allowed_sources, origin=Origin.RUN_INPUT,
            bounds=bounds,
        )  # fmt: skip
    return load_dataset(
        name,
        spec,
        registry=sources.registry,
        run_id=sources.info.run_id,
        scratch=sources.scratch / name,
        bounds=bounds,
    )


class NoReference(DatasetError):
    """The record has no other promotable version: nothing to compare against yet."""


def _from_alias_holder(
    sources: DataSources, training: DatasetSpec, bounds: DatasetBounds
) -> LoadedDataset:
    """The training data of the baseline version, found with the spec the entry uses for the
    candidate's: the same artifact path of the holder's run, the dataset the holder's run
    logged under the same context, or the same URI."""
    name = "reference"
    info = sources.info
    holder = sources.baseline
    if holder is None:
        raise NoReference(
            "no reference data: the gatekeeper's record has no other version that holds the "
            "alias yet"
        )
    holder_info = sources.registry.get_version(info.name, holder)
    if not holder_info.run_id:
        raise DatasetError(f"{name} data: version {holder} (the alias holder) has no run")
    if training.artifact_path is not None or training.uri is not None:
        loaded = load_dataset(
            name,
            training.model_copy(update={"target": None}),
            registry=sources.registry,
            run_id=holder_info.run_id,
            scratch=sources.scratch / name,
            bounds=bounds,
        )
        return dataclasses.replace(loaded, origin=Origin.ALIAS_HOLDER)
    contexts = (
        (training.from_run.context,)
        if isinstance(training.from_run, FromRun)
        else TRAINING_CONTEXTS
    )
    found = pick_logged(sources.registry.logged_datasets(holder_info.run_id), contexts)
    if found is None:
        raise DatasetError(
            f"{name} data: the run of version {holder} (the alias holder) logged no dataset "
            f"with context {' / '.join(contexts)}; set data.reference in the policy"
        )
    return load_logged_dataset(
        name, found, allowed_sources=sources.allowed_sources, origin=Origin.ALIAS_HOLDER,
        bounds=bounds,
    )  # fmt: skip
