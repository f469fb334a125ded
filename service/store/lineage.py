"""Lineage: which versions were trained or evaluated on a dataset, from the runs' records.

Every finished run records the datasets its gates were judged on (source, sha256 of the
bytes read, MLflow's logged digest) and its decision input the model's input columns. A
dataset is named by its source (path or URI, as recorded) or by either digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.tables import FINISHED_STATUSES, GateRun

# the reference is the alias holder's training data: the candidate was not trained on it
USED_AS = ("training", "evaluation")


@dataclass(frozen=True)
class LineageEntry:
    model: str
    version: int
    run_id: str
    used_as: str
    source: str
    sha256: str | None
    logged_digest: str | None
    status: str


def _logged(record: dict[str, Any]) -> dict[str, Any]:
    logged = record.get("logged")
    return logged if isinstance(logged, dict) else {}


def _matches(record: dict[str, Any], dataset: str) -> bool:
    logged = _logged(record)
    names = {record.get("source"), record.get("sha256"), logged.get("digest"), logged.get("source")}
    return dataset in names


def versions_using(
    session: Session, dataset: str, *, model: str | None = None, limit_runs: int = 100_000
) -> list[LineageEntry]:
    query = (
        select(GateRun.id, GateRun.model_name, GateRun.model_version, GateRun.status,
               GateRun.datasets)
        .where(GateRun.status.in_(FINISHED_STATUSES), GateRun.datasets.is_not(None))
        .order_by(GateRun.finished_at.desc())
        .limit(limit_runs)
    )  # fmt: skip
    if model is not None:
        query = query.where(GateRun.model_name == model)
    rows = session.execute(query)
    found: dict[tuple[str, int, str], LineageEntry] = {}
    for run_id, model, version, status, datasets in rows:
        for record in datasets or []:
            if not isinstance(record, dict) or record.get("name") not in USED_AS:
                continue
            if not _matches(record, dataset):
                continue
            key = (model, version, str(record.get("name")))
            if key in found:  # newest run first: keep it
                continue
            logged = _logged(record)
            found[key] = LineageEntry(
                model=model, version=version, run_id=run_id, used_as=str(record["name"]),
                source=str(record.get("source")), sha256=record.get("sha256"),
                logged_digest=logged.get("digest"), status=status,
            )  # fmt: skip
    return sorted(found.values(), key=lambda e: (e.model, e.version, e.used_as))
