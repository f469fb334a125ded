"""Lineage by content and canonical source: a dataset cannot escape an incident by spelling.

Real files (a symlink, a `..` path) and a real SQLite database with recorded runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from service.store.db import transaction
from service.store.lineage import canonical_source, versions_using
from service.store.tables import GateRun, RunStatus, utcnow


def _record(
    session: Any, model: str, version: int, source: str, sha256: str, canonical: str | None = None
) -> None:
    dataset = {"name": "training", "source": source, "sha256": sha256, "logged": None}
    if canonical is not None:  # what a run records since sources are canonicalised
        dataset["canonical_source"] = canonical
    session.add(
        GateRun(
            model_name=model, model_version=version, trigger="manual", status=RunStatus.PASSED,
            policy_digest="p", datasets=[dataset], finished_at=utcnow(),
        )
    )  # fmt: skip


def test_one_file_spelled_five_ways_has_one_canonical_source(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    real = data / "poisoned.csv"
    real.write_text("a,b\n1,2\n")
    link = tmp_path / "innocent.csv"
    os.symlink(real, link)
    spellings = [
        str(real),
        f"file://{real}",
        f"file://localhost{real}",
        str(data / ".." / "data" / "poisoned.csv"),
        str(link),
    ]
    assert {canonical_source(s) for s in spellings} == {f"file://{real}"}


def test_urls_are_compared_without_case_credentials_default_ports_or_signatures() -> None:
    assert canonical_source("HTTPS://Data.Example.com:443/sets/./train.csv?X-Amz-Signature=1") == (
        "https://data.example.com/sets/train.csv"
    )
    assert canonical_source("s3://Bucket/key/../train.parquet") == "s3://bucket/train.parquet"
    assert canonical_source("https://user:pw@data.example.com:8443/t.csv") == (
        "https://data.example.com:8443/t.csv"
    )


def test_the_same_bytes_under_another_name_are_found_by_sha256(
    database_url: str, tmp_path: Path
) -> None:
    real = tmp_path / "poisoned.csv"
    real.write_text("a\n1\n")
    with transaction(database_url) as session:
        _record(session, "alpha", 1, f"file://{real}", "aa" * 32)
        _record(session, "beta", 1, str(tmp_path / "renamed-copy.csv"), "aa" * 32)
        _record(session, "gamma", 1, str(tmp_path / "clean.csv"), "bb" * 32)
        # read through a link that is gone now: the form recorded when it was read counts
        _record(session, "delta", 1, "/mnt/gone/link.csv", "cc" * 32, f"file://{real}")
    with transaction(database_url) as session:
        by_path = versions_using(session, str(tmp_path / "." / "poisoned.csv"))
        assert [(e.model, e.version) for e in by_path] == [("alpha", 1), ("delta", 1)]
        by_content = versions_using(session, str(real), sha256s=["aa" * 32])
        assert [(e.model, e.version) for e in by_content] == [
            ("alpha", 1), ("beta", 1), ("delta", 1),
        ]  # fmt: skip
        assert [e.model for e in versions_using(session, "bb" * 32)] == ["gamma"]
