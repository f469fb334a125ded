"""Lineage: which versions were trained or evaluated on a dataset, from the runs' records.

Every finished run records the datasets its gates were judged on (source, its canonical
form, sha256 of the bytes read, MLflow's logged digest) and its decision input the model's
input columns. A dataset is named by its source or by either digest. Sources are compared in
canonical form (`canonical_source`): the same file spelled `/srv/d.csv`, `file:///srv/d.csv`,
through a symlink or with `..` is one source. The bytes are compared by sha256, so the same
data under a new name or path is found too (`versions_using(..., sha256s=...)`).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.tables import FINISHED_STATUSES, GateRun

# the reference is the alias holder's training data: the candidate was not trained on it
USED_AS = ("training", "evaluation")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_source(source: str) -> str:
    """One spelling per place: local paths (plain or `file://`) as `file://` + the real path
    (symlinks and `..` resolved); URLs with scheme and host lower-cased, no credentials, no
    default port, no query or fragment (a presigned URL's signature is not the object), the
    path normalised. Anything that does not parse is returned as given."""
    if not source:
        return source
    try:
        parts = urlsplit(source)
        scheme = parts.scheme.lower()
        if scheme in ("", "file") and (scheme or source.startswith("/")):
            if scheme == "file" and parts.netloc not in ("", "localhost"):
                return source  # a file on another host: not ours to resolve
            path = unquote(parts.path) if scheme else source
            return "file://" + os.path.realpath(path)
        if not scheme or len(scheme) == 1:  # a relative path, a Windows drive: as given
            return source
        host = (parts.hostname or "").lower()
        port = parts.port
        netloc = host + (f":{port}" if port and port != _DEFAULT_PORTS.get(scheme) else "")
        path = posixpath.normpath(unquote(parts.path)) if parts.path else ""
        if path == ".":
            path = ""
        return urlunsplit((scheme, netloc, path, "", ""))
    except (ValueError, OSError):  # a NUL byte, a bad port: compared as given
        return source


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


def record_names(record: dict[str, Any]) -> set[str]:
    """Every name a recorded dataset answers to: its source (as given and canonical), the
    sha256 of its bytes, MLflow's digest and the logged source."""
    logged = _logged(record)
    sources = {s for s in (record.get("source"), logged.get("source")) if isinstance(s, str)}
    names = set(sources)
    recorded = record.get("canonical_source")
    if isinstance(recorded, str):  # canonical when the run read it: not resolved again here
        names.add(recorded)
        sources.discard(str(record.get("source")))
    names |= {canonical_source(s) for s in sources}  # runs recorded before canonical forms
    names |= {v for v in (record.get("sha256"), logged.get("digest")) if isinstance(v, str)}
    names.discard("")
    return names


def dataset_keys(dataset: str, sha256s: Collection[str] = ()) -> set[str]:
    """What an incident or a lineage query matches: the name as given, its canonical form,
    and the sha256 of any bytes recorded under it."""
    return {dataset, canonical_source(dataset), *sha256s} - {""}


def versions_using(
    session: Session,
    dataset: str,
    *,
    model: str | None = None,
    sha256s: Collection[str] = (),
    limit_runs: int = 100_000,
) -> list[LineageEntry]:
    keys = dataset_keys(dataset, sha256s)
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
    for run_id, model_name, version, status, datasets in rows:
        for record in datasets or []:
            if not isinstance(record, dict) or record.get("name") not in USED_AS:
                continue
            if not keys & record_names(record):
                continue
            key = (model_name, version, str(record.get("name")))
            if key in found:  # newest run first: keep it
                continue
            logged = _logged(record)
            found[key] = LineageEntry(
                model=model_name, version=version, run_id=run_id, used_as=str(record["name"]),
                source=str(record.get("source")), sha256=record.get("sha256"),
                logged_digest=logged.get("digest"), status=status,
            )  # fmt: skip
    return sorted(found.values(), key=lambda e: (e.model, e.version, e.used_as))
