"""The only module that talks to MLflow.

Everything the gatekeeper reads from or writes to the registry goes through `Registry`, which
maps MLflow's exceptions onto ours: not-found is permanent (the run errors), unreachable or 5xx
is transient (the run is retried).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from service.errors import (
    BoundExceeded,
    LocalDiskError,
    RegistryNotFound,
    RegistryRejected,
    RegistryUnavailable,
    disk_error_kind,
)
from service.mlflow.logged_data import LoggedDataset, logged_datasets

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    source: str
    run_id: str | None
    created_ms: int
    status: str
    tags: dict[str, str]
    description: str = ""


# MLflow's HTTP client retries a dead server for minutes by default, and reads these per
# request; a worker should hear of an outage in seconds and let the queue's retry policy
# decide. Set once by the process entry point (`gatekeeper serve` / `worker`), where a
# process-wide setting belongs, not as a side effect of constructing a client.
CLIENT_ENVIRONMENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def configure_client_environment() -> None:
    """Our defaults for MLflow's HTTP client; an operator's own values win."""
    for name, value in CLIENT_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


class Registry:
    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def get_version(self, name: str, version: int) -> VersionInfo:
        try:
            mv = self._client.get_model_version(name, str(version))
        except Exception as exc:
            _raise_mapped(exc, f"model version {name}/{version}")
        return _version_info(mv)

    def newest_versions(self, page_size: int = 100) -> Iterator[VersionInfo]:
        """All versions of all models, newest first, one page at a time (lazy)."""
        token: str | None = None
        while True:
            try:
                page = self._client.search_model_versions(
                    max_results=page_size,
                    order_by=["creation_timestamp DESC"],
                    page_token=token,
                )
            except Exception as exc:
                _raise_mapped(exc, "model version search")
            for mv in page:
                yield _version_info(mv)
            token = page.token
            if not token:
                return

    def artifact_size(self, name: str, version: int, *, max_entries: int = 100_000) -> int:
        """Total bytes of the version's artifacts from list_artifacts, before any download."""
        import mlflow.artifacts

        try:
            uri = self._client.get_model_version_download_uri(name, str(version))
            total, pending, entries = 0, [""], 0
            while pending:
                path = pending.pop()
                listing = mlflow.artifacts.list_artifacts(
                    artifact_uri=f"{uri.rstrip('/')}/{path}" if path else uri,
                    tracking_uri=self.tracking_uri,
                )
                for info in listing:
                    entries += 1
                    if entries > max_entries:
                        raise BoundExceeded(f"more than {max_entries} artifact files")
                    if info.is_dir:
                        pending.append(info.path.rsplit("/", 1)[-1] if not path else
                                       f"{path}/{info.path.rsplit('/', 1)[-1]}")  # fmt: skip
                    else:
                        total += int(info.file_size or 0)
        except BoundExceeded:
            raise
        except Exception as exc:
            _raise_mapped(exc, f"artifact listing of {name}/{version}")
        return total

    def download_artifacts(self, name: str, version: int, dst: Path) -> Path:
        import mlflow.artifacts

        try:
            uri = self._client.get_model_version_download_uri(name, str(version))
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
        except Exception as exc:
            _raise_mapped(exc, f"artifacts of {name}/{version}")
        return Path(local)

    def download_run_artifact(self, run_id: str, artifact_path: str, dst: Path) -> Path:
        import mlflow.artifacts

        dst.mkdir(parents=True, exist_ok=True)
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=artifact_path,
                dst_path=str(dst),
                tracking_uri=self.tracking_uri,
            )
        except Exception as exc:
            _raise_mapped(exc, f"artifact {artifact_path} of run {run_id}")
        return Path(local)

    def logged_datasets(self, run_id: str) -> list[LoggedDataset]:
        """The datasets the run logged with `mlflow.log_input` (metadata, never rows)."""
        try:
            run = self._client.get_run(run_id)
        except Exception as exc:
            _raise_mapped(exc, f"run {run_id}")
        return logged_datasets(run)

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        try:
            for key, value in tags.items():
                self._set_tag(name, version, key, value)
        except Exception as exc:
            _raise_mapped(exc, f"tags of {name}/{version}")

    def _set_tag(self, name: str, version: int, key: str, value: str) -> None:
        """One tag. MLflow's SQL store sets a tag by read-then-insert, so two writers of one
        tag at once make one of them fail on the unique key (a 400 that is not a refusal):
        that one writes again, and the last value wins as it would have anyway."""
        for attempt in range(_TAG_WRITE_ATTEMPTS):
            try:
                # str(): a TagKey is a StrEnum; MLflow gets the plain text
                self._client.set_model_version_tag(name, str(version), str(key), value)
                return
            except Exception as exc:
                if attempt + 1 == _TAG_WRITE_ATTEMPTS or not _is_write_race(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))

    def has_model(self, name: str) -> bool:
        """Whether MLflow has a registered model of this name (unreachable: raises)."""
        try:
            self._client.get_registered_model(name)
        except Exception as exc:
            if _is_not_found(exc):
                return False
            _raise_mapped(exc, f"registered model {name}")
        return True

    def alias_version(self, name: str, alias: str) -> int | None:
        # get_model_version_by_alias answers a missing alias with INVALID_PARAMETER_VALUE,
        # indistinguishable from a real bad request; the model's alias map is unambiguous.
        try:
            model = self._client.get_registered_model(name)
        except Exception as exc:
            _raise_mapped(exc, f"registered model {name}")
        version = (model.aliases or {}).get(alias)
        return int(version) if version is not None else None

    def set_alias(self, name: str, alias: str, version: int) -> None:
        try:
            self._client.set_registered_model_alias(name, alias, str(version))
        except Exception as exc:
            _raise_mapped(exc, f"alias {alias} of {name}")

    def log_signature(self, name: str, version: int, bundle: str) -> str:
        """The bundle as an artifact of a run in the `gatekeeper-signatures` experiment;
        returns its `runs:/` URI (what the `gatekeeper.signature_uri` tag points at)."""
        try:
            experiment = self._client.get_experiment_by_name(SIGNATURE_EXPERIMENT)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self._client.create_experiment(SIGNATURE_EXPERIMENT)
            )
            run = self._client.create_run(
                experiment_id, run_name=f"{name}-v{version}", tags={"gatekeeper.model": name}
            )
            path = f"signatures/{version}"
            self._client.log_text(run.info.run_id, bundle, f"{path}/model.sig")
            self._client.set_terminated(run.info.run_id)
        except Exception as exc:
            _raise_mapped(exc, f"signature of {name}/{version}")
        return f"runs:/{run.info.run_id}/{path}/model.sig"

    def delete_alias(self, name: str, alias: str) -> None:
        try:
            self._client.delete_registered_model_alias(name, alias)
        except Exception as exc:
            if _is_not_found(exc):
                return  # already gone: what we wanted
            _raise_mapped(exc, f"alias {alias} of {name}")

    def versions_of(self, name: str, max_results: int = 200) -> list[VersionInfo]:
        """The newest `max_results` versions of one model, with their tags (one call)."""
        try:
            found = self._client.search_model_versions(
                f"name = '{_quoted(name)}'",
                max_results=max_results,
                order_by=["version_number DESC"],
            )
        except Exception as exc:
            _raise_mapped(exc, f"versions of {name}")
        return [_version_info(mv) for mv in found]

    def is_healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.tracking_uri.rstrip('/')}/health", timeout=3).is_success
        except httpx.HTTPError:
            return False


def _version_info(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=mv.name,
        version=int(mv.version),
        source=str(mv.source or ""),
        run_id=mv.run_id or None,
        created_ms=int(mv.creation_timestamp or 0),
        status=str(mv.status or ""),
        tags=dict(mv.tags or {}),
        description=str(mv.description or ""),
    )


SIGNATURE_EXPERIMENT = "gatekeeper-signatures"


def _quoted(name: str) -> str:
    """A model name inside MLflow's filter string: single quotes doubled."""
    return name.replace("'", "''")


_TAG_WRITE_ATTEMPTS = 4
_WRITE_RACE_MARKERS = ("UNIQUE constraint failed", "duplicate key value violates unique")


def _is_write_race(exc: Exception) -> bool:
    return any(marker in str(exc) for marker in _WRITE_RACE_MARKERS)


def _is_not_found(exc: Exception) -> bool:
    return isinstance(exc, MlflowException) and exc.error_code in _NOT_FOUND_CODES


def _raise_mapped(exc: Exception, what: str) -> NoReturn:
    disk = disk_error_kind(exc)
    if disk is not None:  # our disk, not MLflow: never retried as an outage
        raise LocalDiskError(f"{disk} on the gatekeeper's data dir while fetching {what}") from exc
    if _is_not_found(exc):
        raise RegistryNotFound(f"MLflow has no {what}") from exc
    if isinstance(exc, RestException) and int(exc.get_http_status_code()) < 500:  # type: ignore[no-untyped-call]
        # A 4xx other than not-found is our bug or a permission problem: not worth retrying.
        raise RegistryRejected(f"MLflow refused {what}: {exc}") from exc
    raise RegistryUnavailable(f"MLflow unavailable for {what}: {exc}") from exc
