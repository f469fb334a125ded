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
from service.policy import DatasetSpec
from service.registry import Registry

MAX_DATASET_BYTES = 2 * 1024**3


class DatasetError(GatekeeperError):
    """A dataset the policy names could not be loaded; the gates that need it error."""


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
) -> LoadedDataset:
    source, data = _read_bytes(spec, registry=registry, run_id=run_id, scratch=scratch)
    frame = _parse(data, spec, source)
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
        import boto3  # the user's own AWS setup; not a dependency of ours
    except ImportError as exc:
        raise DatasetError("s3:// datasets need boto3 installed beside the gatekeeper") from exc
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        return body.read(MAX_DATASET_BYTES + 1)
    except Exception as exc:  # botocore's errors are many; all mean "could not read it"
        raise DatasetError(f"cannot read s3://{bucket}/{key}: {exc}") from exc


def _parse(data: bytes, spec: DatasetSpec, source: str) -> pd.DataFrame:
    kind = spec.format or _guess_format(source, data)
    try:
        if kind == "parquet":
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data))
    except Exception as exc:  # pandas/pyarrow raise many types for malformed input
        raise DatasetError(f"cannot parse {source} as {kind}: {exc}") from exc


def _guess_format(source: str, data: bytes) -> str:
    lowered = source.lower().split("?")[0]
    if lowered.endswith((".parquet", ".pq")) or data[:4] == b"PAR1":
        return "parquet"
    return "csv"
