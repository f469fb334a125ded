"""Load the rows a gate is judged on, from where the policy says, and fingerprint them.

Sources: `file://` URIs and plain paths, `http(s)://` (streamed, size-capped), `s3://`
(through boto3 when the user has it installed; we do not add a cloud SDK for them), and
artifacts of the candidate's MLflow run (`artifact_path`). Formats: csv and parquet (by
`format`, else the extension, else the parquet magic bytes). Every dataset is hashed over the
exact bytes read (sha256) and the hash is recorded on the run, so a decision names the data
it was made on. Metrics a trainer logged are never read.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from gates.mlmodel import model_inputs
from service.errors import GatekeeperError
from service.mlflow.logged_data import LoggedDataset, mlflow_digest
from service.mlflow.registry import Registry
from service.policy import DatasetSpec, LimitsConfig
from service.store.lineage import canonical_source

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


class Origin(enum.StrEnum):
    """Where a dataset came from, as the run JSON and the report say it."""

    POLICY_URI = "policy-uri"
    RUN_ARTIFACT = "run-artifact"
    RUN_INPUT = "run-input"  # logged by the candidate's run (mlflow.log_input)
    ALIAS_HOLDER = "alias-holder"  # logged by the run of the version holding the alias


TRAINING_CONTEXTS = ("training", "train")
EVALUATION_CONTEXTS = ("evaluation", "eval", "test", "validation")


@dataclass(frozen=True)
class LoadedDataset:
    name: str
    source: str
    frame: pd.DataFrame
    sha256: str
    size_bytes: int
    origin: Origin = Origin.POLICY_URI
    logged: LoggedDataset | None = None
    target: str | None = None

    @property
    def trainer_supplied(self) -> bool:
        """Evaluation rows chosen by whoever trained the candidate: they can flatter it."""
        return self.origin in (Origin.RUN_INPUT, Origin.RUN_ARTIFACT)

    def with_target(self, target: str) -> LoadedDataset:
        return dataclasses.replace(self, target=target)

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            # the one spelling lineage and incidents compare (service/store/lineage.py)
            "canonical_source": canonical_source(self.source),
            "origin": self.origin.value,
            "trainer_supplied": self.trainer_supplied,
            "logged": self.logged.record() if self.logged else None,
            "target": self.target,
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
    frame = _parse(data, spec.format, source, bounds)
    if spec.target is not None and spec.target not in frame.columns:
        raise DatasetError(
            f"{name} data ({source}) has no target column {spec.target!r}; "
            f"columns are {', '.join(map(str, frame.columns[:20]))}"
        )
    origin = Origin.RUN_ARTIFACT if spec.artifact_path is not None else Origin.POLICY_URI
    digest = hashlib.sha256(data).hexdigest()
    return LoadedDataset(name, source, frame, digest, len(data), origin, target=spec.target)


def pick_logged(logged: list[LoggedDataset], contexts: tuple[str, ...]) -> LoggedDataset | None:
    """The dataset logged under the first of `contexts` (case-insensitive) that has one."""
    for context in contexts:
        for dataset in logged:
            if (dataset.context or "").lower() == context.lower():
                return dataset
    return None


def load_logged_dataset(
    name: str,
    logged: LoggedDataset,
    *,
    allowed_sources: tuple[str, ...],
    origin: Origin,
    bounds: DatasetBounds | None = None,
) -> LoadedDataset:
    """Rows of a dataset a run logged, read only from an allowed source, and refused unless
    MLflow's digest of what was read equals the digest the run logged."""
    bounds = bounds or DatasetBounds()
    where = f"{name} data logged by the run ({logged.name!r} at {logged.source})"
    if not source_allowed(logged.source, allowed_sources):
        listed = ", ".join(allowed_sources) or "none configured"
        raise DatasetError(
            f"{where} is not under an allowed source (GATEKEEPER_LOGGED_DATA_SOURCES: "
            f"{listed}); a logged source is the trainer's word, so it was not read"
        )
    # no redirects: the allow-list judged this URL, not wherever its server sends us next
    data = _read_uri(
        logged.source, follow_redirects=False, limit=bounds.max_bytes, allowed=allowed_sources
    )
    if len(data) > bounds.max_bytes:
        raise DatasetError(f"{where} is {len(data)} bytes, {_over(bounds)}")
    frame = _parse(data, None, logged.source, bounds)
    recomputed = mlflow_digest(frame)
    if recomputed != logged.digest:
        raise DatasetError(
            f"the logged {name} data changed after the run: {where} has MLflow digest "
            f"{recomputed}, the run logged {logged.digest}; the data under the model is not "
            "the data it was trained on"
        )
    digest = hashlib.sha256(data).hexdigest()
    return LoadedDataset(name, logged.source, frame, digest, len(data), origin, logged)


def source_allowed(source: str, allowed: tuple[str, ...]) -> bool:
    """Whether `source` lies under one of the operator's prefixes.

    Local paths are compared after resolving `..` and symlinks, so `/srv/data/../../etc`
    is not under `/srv/data/`; URLs by scheme and host exactly and then by path prefix, so
    `https://data.example.com.evil/` is not under `https://data.example.com/`."""
    if not source:
        return False
    try:
        return any(_under(source, prefix) for prefix in allowed)
    except (ValueError, OSError, RuntimeError):  # a NUL byte, a symlink loop: not allowed
        return False


def _under(source: str, prefix: str) -> bool:
    src, pre = urlparse(source), urlparse(prefix)
    if src.scheme.lower() in ("", "file") and pre.scheme.lower() in ("", "file"):
        path = Path(unquote(src.path) if src.scheme else source)
        root = Path(unquote(pre.path) if pre.scheme else prefix)
        if not path.is_absolute() or not root.is_absolute():
            return False
        return path.resolve().is_relative_to(root.resolve())
    if (src.scheme.lower(), src.netloc.lower()) != (pre.scheme.lower(), pre.netloc.lower()):
        return False
    if src.query or src.fragment or any(c in src.path for c in "%;\\"):
        return False  # no encodings or ;params: what we compare is what the server gets
    if ".." in src.path.split("/"):
        return False
    root_path = pre.path if pre.path.endswith("/") else pre.path + "/"
    return src.path.startswith(root_path) or src.path == pre.path


def infer_target(frame: pd.DataFrame, configured: str | None, mlmodel: dict[str, Any]) -> str:
    """The policy's target, else the one column that is not a model input in the signature."""
    if configured is not None:
        if configured not in frame.columns:
            raise DatasetError(f"the target column {configured!r} is not in the data")
        return configured
    # the MLmodel is the model author's file: gates.mlmodel reads it without trusting its shape
    inputs, _ = model_inputs(mlmodel)
    if not inputs:
        raise DatasetError(
            "the model has no input signature to tell the target apart: set `target` for "
            "this dataset in the policy"
        )
    rest = [str(c) for c in frame.columns if str(c) not in inputs]
    if len(rest) != 1:
        raise DatasetError(
            f"cannot tell the target column: {len(rest)} column(s) are not model inputs "
            f"({', '.join(rest[:10]) or 'none'}); set `target` for this dataset in the policy"
        )
    return rest[0]


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
    raise DatasetError("from_run / from_alias datasets are read from what the run logged")


HTTP_DEADLINE_S = 300.0  # a whole download, however slowly its server dribbles bytes


def _read_uri(
    uri: str,
    *,
    follow_redirects: bool = True,
    limit: int = MAX_DATASET_BYTES,
    allowed: tuple[str, ...] | None = None,
) -> bytes:
    """The bytes at `uri`, never more than `limit` held. With `allowed` (a trainer-written
    source), a local file must still lie under an allowed prefix once it is open."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file"):
        path = Path(unquote(parsed.path) if scheme == "file" else uri)
        return _read_local(path, limit=limit, allowed=allowed)
    if scheme in ("http", "https"):
        return _read_http(uri, follow_redirects=follow_redirects, limit=limit)
    if scheme == "s3":
        return _read_s3(parsed.netloc, parsed.path.lstrip("/"))
    raise DatasetError(f"unsupported dataset URI scheme {scheme!r} in {uri}")


def _read_local(
    path: Path, *, limit: int = MAX_DATASET_BYTES, allowed: tuple[str, ...] | None = None
) -> bytes:
    """Open first, then judge what was opened: the type and size from the descriptor, and
    (for a trainer-written source) where it really is, so a path swapped for a symlink or a
    FIFO between the allow-list check and the read is refused, not followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise DatasetError(f"dataset file {path} does not exist") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
            raise DatasetError(f"dataset {path} is not a regular file")
        if allowed is not None:
            opened = os.path.realpath(f"/proc/self/fd/{fd}")
            if not any(_under(opened, prefix) for prefix in allowed):
                raise DatasetError(
                    f"dataset {path} resolved to {opened} when opened, outside the allowed "
                    "sources; not read"
                )
        if info.st_size > limit:
            raise DatasetError(f"{path} is {info.st_size} bytes, over the {limit}-byte limit")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise DatasetError(f"{path} grew past the {limit}-byte limit while it was read")
        return data
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc}") from exc
    finally:
        os.close(fd)


def _read_http(uri: str, *, follow_redirects: bool = True, limit: int = MAX_DATASET_BYTES) -> bytes:
    import httpx

    deadline = time.monotonic() + HTTP_DEADLINE_S
    try:
        with httpx.stream("GET", uri, timeout=60, follow_redirects=follow_redirects) as response:
            response.raise_for_status()
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise DatasetError(f"{uri} is {declared} bytes, over the {limit}-byte limit")
            buffer = bytearray()
            for chunk in response.iter_bytes():
                buffer += chunk
                if len(buffer) > limit:
                    raise DatasetError(f"{uri} is over the {limit}-byte limit")
                if time.monotonic() > deadline:
                    raise DatasetError(
                        f"{uri} did not finish downloading within {HTTP_DEADLINE_S:g} s"
                    )
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


def _parse(data: bytes, fmt: str | None, source: str, bounds: DatasetBounds) -> pd.DataFrame:
    kind = fmt or _guess_format(source, data)
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
