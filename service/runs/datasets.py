"""Load the rows a gate is judged on, from where the policy says, and fingerprint them.

Sources: `file://` URIs and plain paths, `http(s)://` (streamed, size-capped), `s3://`
(through boto3 when the user has it installed; we do not add a cloud SDK for them), and
artifacts of the candidate's MLflow run (`artifact_path`). Formats: csv and parquet (by
`format`, else the extension, else the parquet magic bytes). Every dataset is hashed over the
exact bytes read (sha256) and the hash is recorded on the run, so a decision names the data
it was made on. Metrics a trainer logged are never read.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from service.errors import GatekeeperError
from service.mlflow.registry import Registry
from service.policy import DatasetSpec, LimitsConfig

MAX_DATASET_BYTES = 2 * 1024**3


class DatasetError(GatekeeperError):
    """A dataset the policy names could not be loaded; the gates that need it error."""


@dataclass(frozen=True)
class DatasetBounds:
    """Checked before rows are materialised: a 237 KB parquet file can hold 30M rows."""

    max_bytes: int = MAX_DATASET_BYTES  # bytes read, and parquet's uncompressed size
    max_rows: int = 5_000_000

    @classmethod
    def from_policy(cls, limits: LimitsConfig) -> DatasetBounds:
        return cls(int(limits.max_dataset_gb * 1024**3), limits.max_dataset_rows)


@dataclass(frozen=True)
class LoadedDataset:
    name: str
    source: str
    frame: pd.DataFrame
    sha256: str
    size_bytes: int

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "sha256": self.sha256,
            "bytes": self.size_bytes,
            "rows": len(self.frame),
            "columns": [str(c) for c in self.frame.columns],
        }


def load_dataset(
    name: str,
    spec: DatasetSpec,
    *,
    registry: Registry | None = None,
    run_id: str | None = None,
    scratch: Path | None = None,
    bounds: DatasetBounds | None = None,
) -> LoadedDataset:
    bounds = bounds or DatasetBounds()
    source, data = _read_bytes(spec, registry=registry, run_id=run_id, scratch=scratch)
    if len(data) > bounds.max_bytes:
        raise DatasetError(f"{name} data ({source}) is {len(data)} bytes, {_over(bounds)}")
    frame = _parse(data, spec, source, bounds)
    if spec.target is not None and spec.target not in frame.columns:
        raise DatasetError(
            f"{name} data ({source}) has no target column {spec.target!r}; "
            f"columns are {', '.join(map(str, frame.columns[:20]))}"
        )
    return LoadedDataset(name, source, frame, hashlib.sha256(data).hexdigest(), len(data))


def _read_bytes(
    spec: DatasetSpec, *, registry: Registry | None, run_id: str | None, scratch: Path | None
) -> tuple[str, bytes]:
    if spec.uri is not None:
        return spec.uri, _read_uri(spec.uri)
    if spec.artifact_path is not None:
        if registry is None or run_id is None or scratch is None:
            raise DatasetError(
                f"artifact_path {spec.artifact_path!r} needs the candidate's MLflow run, and "
                "this model version has no run"
            )
        local = registry.download_run_artifact(run_id, spec.artifact_path, scratch)
        return f"runs:/{run_id}/{spec.artifact_path}", _read_local(local)
    raise DatasetError("this dataset source (from_run / from_alias) is not supported yet")


def _read_uri(uri: str) -> bytes:
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file"):
        path = Path(unquote(parsed.path) if scheme == "file" else uri)
        return _read_local(path)
    if scheme in ("http", "https"):
        return _read_http(uri)
    if scheme == "s3":
        return _read_s3(parsed.netloc, parsed.path.lstrip("/"))
    raise DatasetError(f"unsupported dataset URI scheme {scheme!r} in {uri}")


def _read_local(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_DATASET_BYTES:
            raise DatasetError(f"{path} is {size} bytes, over the {MAX_DATASET_BYTES} limit")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DatasetError(f"dataset file {path} does not exist") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc}") from exc


def _read_http(uri: str) -> bytes:
    import httpx

    try:
        with httpx.stream("GET", uri, timeout=60, follow_redirects=True) as response:
            response.raise_for_status()
            buffer = bytearray()
            for chunk in response.iter_bytes():
                buffer += chunk
                if len(buffer) > MAX_DATASET_BYTES:
                    raise DatasetError(f"{uri} is over the {MAX_DATASET_BYTES}-byte limit")
            return bytes(buffer)
    except httpx.HTTPError as exc:
        raise DatasetError(f"cannot download dataset {uri}: {exc}") from exc


def _read_s3(bucket: str, key: str) -> bytes:
    try:
        import boto3  # type: ignore[import-not-found]  # the user's AWS setup, not our dependency
    except ImportError as exc:
        raise DatasetError("s3:// datasets need boto3 installed beside the gatekeeper") from exc
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        return bytes(body.read(MAX_DATASET_BYTES + 1))
    except Exception as exc:  # botocore's errors are many; all mean "could not read it"
        raise DatasetError(f"cannot read s3://{bucket}/{key}: {exc}") from exc


def _over(bounds: DatasetBounds) -> str:
    return (
        f"over the policy's limits (max_dataset_gb {bounds.max_bytes / 1024**3:g}, "
        f"max_dataset_rows {bounds.max_rows}); not loaded"
    )


def _parse(data: bytes, spec: DatasetSpec, source: str, bounds: DatasetBounds) -> pd.DataFrame:
    kind = spec.format or _guess_format(source, data)
    try:
        if kind == "parquet":
            _check_parquet_metadata(data, source, bounds)
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            frame = pd.read_csv(io.BytesIO(data), nrows=bounds.max_rows + 1)
            if len(frame) > bounds.max_rows:
                raise DatasetError(
                    f"{source} has more than {bounds.max_rows} rows, {_over(bounds)}"
                )
    except DatasetError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for malformed input
        raise DatasetError(f"cannot parse {source} as {kind}: {exc}") from exc
    in_memory = int(frame.memory_usage(deep=True).sum())
    if in_memory > bounds.max_bytes:
        raise DatasetError(f"{source} takes {in_memory} bytes in memory, {_over(bounds)}")
    return frame


def _check_parquet_metadata(data: bytes, source: str, bounds: DatasetBounds) -> None:
    """Rows and uncompressed size from the footer, before a single row is decoded."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    # Encoded sizes say little (run-length encoding makes 30M zeros a few KB); 8 bytes per
    # cell is a floor on what the rows take once decoded.
    uncompressed = max(
        sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)),
        metadata.num_rows * metadata.num_columns * 8,
    )
    if metadata.num_rows > bounds.max_rows or uncompressed > bounds.max_bytes:
        raise DatasetError(
            f"{source} declares {metadata.num_rows} rows (at least {uncompressed} bytes decoded) "
            f"in {len(data)} bytes on disk, {_over(bounds)}"
        )


def _guess_format(source: str, data: bytes) -> str:
    lowered = source.lower().split("?")[0]
    if lowered.endswith((".parquet", ".pq")) or data[:4] == b"PAR1":
        return "parquet"
    return "csv"
