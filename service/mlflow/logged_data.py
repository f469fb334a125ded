"""What MLflow holds about the datasets a run logged with `mlflow.log_input` (never rows).

A logged dataset is metadata: a name, MLflow's digest of the frame (first 10,000 rows), the
source as the trainer described it, the schema (without the target) and the context tag
`mlflow.data.context`. Every field is written by whoever ran the training, so the service
treats the source as untrusted (service/runs/datasets.py allows only operator-listed sources)
and re-checks the digest on the rows it loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

CONTEXT_TAG = "mlflow.data.context"


@dataclass(frozen=True)
class LoggedDataset:
    name: str
    digest: str
    source_type: str  # local | http | s3 | ... (MLflow's DatasetSource type)
    source: str  # the URI or path inside MLflow's source JSON, as logged
    context: str | None
    columns: tuple[str, ...]  # from the logged schema; MLflow does not store the target

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "digest": self.digest,
            "source_type": self.source_type,
            "source": self.source,
            "context": self.context,
        }


def logged_datasets(run: Any) -> list[LoggedDataset]:
    """The dataset inputs of an MLflow `Run` (client.get_run), in logged order."""
    inputs = getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []
    found = []
    for item in inputs:
        dataset = item.dataset
        context = next((t.value for t in item.tags or [] if t.key == CONTEXT_TAG), None)
        found.append(
            LoggedDataset(
                name=str(dataset.name),
                digest=str(dataset.digest),
                source_type=str(dataset.source_type),
                source=_source_uri(str(dataset.source or "")),
                context=context,
                columns=_schema_columns(str(dataset.schema or "")),
            )
        )
    return found


def mlflow_digest(frame: pd.DataFrame) -> str:
    """MLflow's own digest of a frame, as `mlflow.data.from_pandas(frame).digest` logs it."""
    from mlflow.data.pandas_dataset import from_pandas

    return str(from_pandas(frame).digest)


def _source_uri(source_json: str) -> str:
    try:
        parsed = json.loads(source_json)
    except json.JSONDecodeError:
        return source_json
    if isinstance(parsed, dict):
        for key in ("uri", "url", "path"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key])
    return source_json


def _schema_columns(schema_json: str) -> tuple[str, ...]:
    try:
        parsed = json.loads(schema_json) if schema_json else {}
    except json.JSONDecodeError:
        return ()
    specs = parsed.get("mlflow_colspec", []) if isinstance(parsed, dict) else []
    if isinstance(specs, str):  # some MLflow versions nest it as a JSON string
        try:
            specs = json.loads(specs)
        except json.JSONDecodeError:
            return ()
    return tuple(str(s["name"]) for s in specs if isinstance(s, dict) and "name" in s)
