"""Tabular data shipped inside the artifact, read as datasets for the PII and secret checks.

`mlflow.sklearn.log_model(model, input_example=X_train.head())` copies training rows into the
model as `input_example.json` (and `serving_input_example.json`); teams also ship CSV,
parquet or JSON-lines files of training rows beside the weights. Whatever personal data or
credentials those rows hold go wherever the model goes. The security gate reads each such file
as a table and runs the same recognizers and column rules as on the policy's datasets
(SEC-PII-001, SEC-SECRET-*), naming the file, the column and the entity; the policy's column
classes (`columns: {email: pii}`) allow a column here exactly as they do in a dataset.

Bounded: files above `MAX_TABLE_BYTES` are not parsed (the walker still searches their text
for secrets), at most `MAX_TABLE_ROWS` rows are read, parquet through its metadata first.
A file that does not parse as a table is recorded in the evidence, not judged: it was already
scanned as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

EXAMPLE_NAMES = frozenset({"input_example.json", "serving_input_example.json"})
TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".parquet", ".jsonl", ".ndjson"})
MAX_TABLE_BYTES = 256 * 1024**2
MAX_TABLE_ROWS = 100_000
MAX_FILES = 200


@dataclass(frozen=True)
class ArtifactTable:
    path: str  # relative to the artifact root
    frame: pd.DataFrame | None
    error: str | None = None


def artifact_tables(root: Path) -> Iterator[ArtifactTable]:
    """Each table-like file under `root` (no symlinks followed), parsed or with its error."""
    if not root.is_dir():
        return
    seen = 0
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or not _is_table_name(path.name):
            continue
        seen += 1
        if seen > MAX_FILES:
            return
        rel = path.relative_to(root).as_posix()
        size = path.stat().st_size
        if size > MAX_TABLE_BYTES:
            yield ArtifactTable(rel, None, f"{size} bytes: over the {MAX_TABLE_BYTES} bound")
            continue
        try:
            yield ArtifactTable(rel, _read(path))
        except Exception as exc:  # a file that does not parse is not a table: noted, not judged
            yield ArtifactTable(rel, None, f"{type(exc).__name__}: {str(exc)[:200]}")


def _is_table_name(name: str) -> bool:
    return name in EXAMPLE_NAMES or Path(name).suffix.lower() in TABLE_SUFFIXES


def _read(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if path.name in EXAMPLE_NAMES:
        return example_frame(json.loads(path.read_text(encoding="utf-8")))
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=MAX_TABLE_ROWS)
    if suffix == ".parquet":
        return _read_parquet(path)
    return pd.read_json(path, lines=True, nrows=MAX_TABLE_ROWS)


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    batches = []
    rows = 0
    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(batch_size=10_000):
            batches.append(batch)
            rows += batch.num_rows
            if rows >= MAX_TABLE_ROWS:
                break
    if not batches:
        return pd.DataFrame()
    return pa.Table.from_batches(batches).slice(0, MAX_TABLE_ROWS).to_pandas()


def example_frame(payload: Any) -> pd.DataFrame:
    """MLflow's input example formats as a DataFrame: split orient (`columns`, `data`), the
    serving wrappers (`dataframe_split`, `dataframe_records`, `inputs`, `instances`), records,
    or a dict of columns."""
    if isinstance(payload, dict):
        for key in ("dataframe_split", "dataframe_records", "inputs", "instances"):
            if key in payload:
                return example_frame(payload[key])
        if "data" in payload and isinstance(payload["data"], list):
            return pd.DataFrame(payload["data"], columns=payload.get("columns"))
        if all(isinstance(v, list) for v in payload.values()):
            return pd.DataFrame(payload)
        return pd.DataFrame([payload])
    if isinstance(payload, list):
        if all(isinstance(row, dict) for row in payload):
            return pd.DataFrame(payload)
        return pd.DataFrame(payload)
    raise ValueError(f"an input example of type {type(payload).__name__} is not a table")
