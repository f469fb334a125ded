"""An in-memory MLflow registry for tests of the registry writers (guard, publisher).

It answers the calls `service.mlflow.registry.Registry` answers, from dicts: versions with
their tags and stored files, aliases, and a log of every write. Like procrastinate's
InMemoryConnector, it lets the alias rules and tamper detection run in milliseconds; the e2e
files keep driving the real MLflow server through each door.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from service.errors import RegistryNotFound
from service.mlflow.logged_data import LoggedDataset
from service.mlflow.registry import VersionInfo


@dataclass
class FakeVersion:
    files: dict[str, bytes]
    created_ms: int
    tags: dict[str, str] = field(default_factory=dict)


class FakeRegistry:
    def __init__(self) -> None:
        self.versions: dict[tuple[str, int], FakeVersion] = {}
        self.aliases: dict[str, dict[str, int]] = {}
        self.writes: list[tuple[str, ...]] = []  # ("tag", name, version, key, value), ...
        self._clock = itertools.count(1_000)

    # -- what a registry user does --------------------------------------------------------

    def register(self, name: str, files: dict[str, bytes]) -> int:
        version = 1 + max((v for n, v in self.versions if n == name), default=0)
        self.versions[(name, version)] = FakeVersion(dict(files), next(self._clock))
        return version

    def _version(self, name: str, version: int) -> FakeVersion:
        try:
            return self.versions[(name, version)]
        except KeyError:
            raise RegistryNotFound(f"MLflow has no model version {name}/{version}") from None

    def _info(self, name: str, version: int) -> VersionInfo:
        stored = self._version(name, version)
        return VersionInfo(
            name=name, version=version, source=f"models:/fake-{name}-{version}", run_id=None,
            created_ms=stored.created_ms, status="READY", tags=dict(stored.tags),
        )  # fmt: skip

    # -- the Registry interface -----------------------------------------------------------

    def get_version(self, name: str, version: int) -> VersionInfo:
        return self._info(name, version)

    def newest_versions(self, page_size: int = 100) -> Iterator[VersionInfo]:
        newest = sorted(self.versions, key=lambda k: -self.versions[k].created_ms)
        return iter([self._info(n, v) for n, v in newest])

    def versions_of(self, name: str, max_results: int = 200) -> list[VersionInfo]:
        mine = sorted((v for n, v in self.versions if n == name), reverse=True)
        return [self._info(name, v) for v in mine[:max_results]]

    def artifact_size(self, name: str, version: int, *, max_entries: int = 100_000) -> int:
        return sum(len(b) for b in self._version(name, version).files.values())

    def download_artifacts(self, name: str, version: int, dst: Path) -> Path:
        root = dst / "model"
        for relative, content in self._version(name, version).files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return root

    def download_run_artifact(self, run_id: str, artifact_path: str, dst: Path) -> Path:
        raise RegistryNotFound(f"MLflow has no run {run_id}")

    def logged_datasets(self, run_id: str) -> list[LoggedDataset]:
        return []

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        stored = self._version(name, version)
        for key, value in tags.items():
            self.writes.append(("tag", name, str(version), str(key), value))
            stored.tags[str(key)] = value

    def has_model(self, name: str) -> bool:
        return any(n == name for n, _ in self.versions)

    def alias_version(self, name: str, alias: str) -> int | None:
        return self.aliases.get(name, {}).get(alias)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._version(name, version)
        self.writes.append(("alias", name, alias, str(version)))
        self.aliases.setdefault(name, {})[alias] = version

    def delete_alias(self, name: str, alias: str) -> None:
        self.writes.append(("alias-deleted", name, alias))
        self.aliases.get(name, {}).pop(alias, None)

    def log_signature(self, name: str, version: int, bundle: str) -> str:
        return f"runs:/fake-signatures/{name}-{version}.sigstore.json"

    def is_healthy(self) -> bool:
        return True
