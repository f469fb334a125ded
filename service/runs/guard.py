"""The registry guard: the gatekeeper's record is the truth; MLflow is made to match it.

Anyone who may register a version in MLflow may also move an alias and set tags. So the
alias and the `gatekeeper.*` tags are derived from the database, and whatever differs is put
back:

- The alias belongs on the newest version whose latest finished run is promotable (`passed`
  or `waived`), that is not quarantined by an open incident and whose stored files were not
  found changed (`desired_holder`). A re-run that fails for the holder, a quarantine or a
  re-verification that finds changed bytes moves it back by the same rule.
- `reconcile_alias` moves it there. The move is recorded (with its audit row) before MLflow
  is touched, so a crash between the two is finished later without a second row; the
  version the alias was on before the recorded move (`previous_version`) is where our own
  half-done move may still show it, so finding it there is not tampering. Anywhere else, or
  deleted while it should be on a version, is: a tamper event, an audit row, the metric,
  and the version it was put on is tagged `gatekeeper.status=tampered`.
- `guard_tags` rewrites a version's `gatekeeper.*` tags from its latest run (a tag that
  claims `passed` on a failed version is tampering too).

The alias never moves onto a version whose files were not downloaded and re-hashed in that
move (service/runs/rehash.py): changed files are tampering, a version MLflow no longer has is
recorded as deleted; either way the rule is applied again without it.

Changes the gatekeeper made are derived from the same record, so the guard agrees with them
and never fights itself. It leaves a version alone while its latest run is recorded but not
yet published, for at most `publish_window_s` (the publisher is about to make MLflow match):
"being published" is a bounded state, so a publish that never completes (the version was
deleted, MLflow refuses) cannot switch the guard off; the poller alerts on it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Settings
from service.errors import RegistryNotFound
from service.metrics import ALIAS_MOVES, TAMPERING
from service.mlflow.port import RegistryPort
from service.runs.rehash import Rehash, rehash_version
from service.runs.version_tags import final_tags, signature_uri
from service.store import audit
from service.store.db import insert_stmt, transaction
from service.store.lineage import versions_using
from service.store.model_lock import model_lock
from service.store.tables import (
    FINISHED_STATUSES,
    PROMOTABLE_STATUSES,
    GateRun,
    Incident,
    ModelPromotion,
    ModelVersion,
    RunStatus,
    TamperEvent,
    utcnow,
)
from service.vocabulary import TagKey, VersionState

log = logging.getLogger("gatekeeper.guard")


def latest_runs(session: Session, name: str) -> dict[int, GateRun]:
    """Each version's latest finished run (the record a version is judged by)."""
    runs = session.scalars(
        select(GateRun)
        .where(GateRun.model_name == name, GateRun.status.in_(FINISHED_STATUSES))
        .order_by(GateRun.finished_at)
    )
    return {run.model_version: run for run in runs}


def quarantined_versions(session: Session, name: str) -> dict[int, str]:
    """Versions of `name` under an open incident -> the incident's id: those it listed when
    it opened, and any version recorded since as trained or evaluated on its dataset."""
    found: dict[int, str] = {}
    for incident in session.scalars(select(Incident).where(Incident.closed_at.is_(None))):
        for item in incident.affected or []:
            if isinstance(item, dict) and item.get("model") == name:
                found[int(item["version"])] = incident.id
        if incident.dataset is not None:
            sha256s = [str(h) for h in incident.dataset_sha256s or []]
            for entry in versions_using(session, incident.dataset, model=name, sha256s=sha256s):
                found.setdefault(entry.version, incident.id)
    return found


def artifact_tampered_versions(session: Session, name: str) -> set[int]:
    """Versions whose stored files were found changed after their passing run: for good (a
    registered version's files do not change; register a new version)."""
    versions = session.scalars(
        select(TamperEvent.version).where(
            TamperEvent.model_name == name, TamperEvent.kind == "artifact"
        )
    )
    return {v for v in versions if v is not None}


def desired_holder(session: Session, name: str) -> int | None:
    return ModelRecord.read(session, name).holder()


def recorded_baseline(session: Session, name: str, candidate: int) -> int | None:
    """The version a candidate is compared with (champion, drift reference): where the record
    puts the alias, the candidate aside. Never MLflow's alias, which any registry user can
    move onto a version of their choosing (or onto the candidate, to drop the comparison)."""
    return ModelRecord.read(session, name).holder(exclude=frozenset({candidate}))


def versions_in_progress(session: Session, name: str) -> set[int]:
    """Versions with a queued or running run: their tags are the worker's until it is done."""
    return set(
        session.scalars(
            select(GateRun.model_version).where(
                GateRun.model_name == name,
                GateRun.status.in_((RunStatus.QUEUED, RunStatus.RUNNING)),
            )
        )
    )


def being_published(session: Session, name: str, window_s: float) -> set[int]:
    """Versions whose finished run is not yet published and was recorded less than
    `window_s` ago: the publisher is on it. Older ones are not waited for (a publish that
    cannot complete must not switch the guard off); the poller retries and alerts on them."""
    since = utcnow() - dt.timedelta(seconds=window_s)
    return set(
        session.scalars(
            select(GateRun.model_version).where(
                GateRun.model_name == name,
                GateRun.status.in_(FINISHED_STATUSES),
                GateRun.published_at.is_(None),
                GateRun.finished_at >= since,
            )
        )
    )


def deleted_versions(session: Session, name: str) -> set[int]:
    """Versions MLflow was found not to have any more (version numbers are never reused)."""
    return set(
        session.scalars(
            select(ModelVersion.version).where(
                ModelVersion.name == name, ModelVersion.deleted_at.is_not(None)
            )
        )
    )


def mark_version_deleted(settings: Settings, name: str, version: int, *, how: str) -> None:
    """Record that MLflow has no `name` v`version` any more: it can never hold the alias."""
    with transaction(settings.resolved_database_url) as session:
        session.execute(
            insert_stmt(session, ModelVersion)
            .values(name=name, version=version, discovered_via="deleted", first_seen_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name", "version"])
        )
        row = session.scalars(
            select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
        ).one()
        if row.deleted_at is not None:
            return
        row.deleted_at = utcnow()
        audit.record(
            session, actor="gatekeeper", action="version.deleted", target=f"{name}/{version}",
            details={"how": how},
        )  # fmt: skip
    log.warning("model=%s version=%s is gone from MLflow (%s)", name, version, how)


@dataclass(frozen=True)
class AliasOutcome:
    holder: int | None  # where MLflow had it
    desired: int | None  # where it is now
    tampered: bool


# Each round that finds the version the alias should move onto changed or deleted rules it
# out and starts again; more rounds than this and the alias is taken away (fail closed).
MAX_MOVE_ROUNDS = 10


def reconcile_alias(
    settings: Settings,
    registry: RegistryPort,
    name: str,
    *,
    published: GateRun | None = None,
    actor: str = "gatekeeper",
) -> AliasOutcome:
    """Put the alias where the record says (see the module docstring), re-hashing the files
    of the version it moves onto first. `published` is the run the caller is publishing, for
    the audit trail of a passing run that does not get the alias."""
    with model_lock(settings.resolved_database_url, name):
        verified: set[tuple[int, str]] = set()  # (version, digest) re-hashed in this move
        for _ in range(MAX_MOVE_ROUNDS):
            desired, digest, moving = _planned_move(settings, registry, name)
            if moving and desired is not None and (desired, digest) not in verified:
                if not _rehash_before_move(settings, registry, name, desired, digest):
                    continue  # ruled out (changed or deleted): the rule again without it
                verified.add((desired, digest))
            rehashed = desired is not None and (desired, digest) in verified
            outcome = _apply_move(settings, registry, name, desired, published, actor, rehashed)
            if outcome is not None:
                return outcome
        log.error(
            "model=%s: the alias did not settle in %d rounds (versions keep changing); "
            "taking it away until the next pass",
            name, MAX_MOVE_ROUNDS,
        )  # fmt: skip
        outcome = _apply_move(settings, registry, name, None, published, actor, forced=True)
        assert outcome is not None
        return outcome


def _planned_move(
    settings: Settings, registry: RegistryPort, name: str
) -> tuple[int | None, str, bool]:
    """(where the record puts the alias, that version's promoted digest, whether the alias
    or the record's position would move onto it)."""
    with transaction(settings.resolved_database_url) as session:
        record = ModelRecord.read(session, name)
        desired = record.holder()
        row = session.get(ModelPromotion, name)
        recorded = (row.version if row is not None else 0) or None
        run = record.latest.get(desired) if desired is not None else None
        digest = (run.artifact_digest or "") if run is not None else ""
    holder = registry.alias_version(name, settings.alias)
    return desired, digest, desired is not None and (holder != desired or recorded != desired)


def _rehash_before_move(
    settings: Settings, registry: RegistryPort, name: str, version: int, digest: str
) -> bool:
    """True when `version`'s stored files still hash to `digest`; otherwise the version is
    recorded as tampered with (and tagged) or as deleted, and False."""
    outcome = rehash_version(settings, registry, name, version, digest)
    if outcome.verdict == Rehash.SAME:
        return True
    if outcome.verdict == Rehash.DELETED:
        mark_version_deleted(settings, name, version, how="re-hash before an alias move")
        return False
    found = {"recorded_digest": digest, "found_digest": outcome.found_digest,
             "how": "re-hash before an alias move", "detail": outcome.detail}  # fmt: skip
    record_artifact_tampering(settings, name, version, found)
    try:
        registry.set_version_tags(name, version, {TagKey.STATUS: VersionState.TAMPERED})
    except RegistryNotFound:
        mark_version_deleted(settings, name, version, how="tagging it tampered")
    return False


def _apply_move(
    settings: Settings,
    registry: RegistryPort,
    name: str,
    desired: int | None,
    published: GateRun | None,
    actor: str,
    rehashed: bool = False,
    *,
    forced: bool = False,
) -> AliasOutcome | None:
    """Record the move to `desired` and make MLflow show it; None when the record no longer
    puts the alias on `desired` (it changed while the files were re-hashed), or when a move
    onto it turns out to be needed that its files were not re-hashed for (the alias was moved
    by hand since the plan): plan again. `forced`: move to `desired` whatever the record says
    (taking the alias away)."""
    alias = settings.alias
    with transaction(settings.resolved_database_url) as session:
        session.execute(
            insert_stmt(session, ModelPromotion)
            .values(model_name=name, version=0, run_id="", updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=["model_name"])
        )
        row = session.scalars(
            select(ModelPromotion).where(ModelPromotion.model_name == name).with_for_update()
        ).one()
        if not forced and desired_holder(session, name) != desired:
            return None
        holder = registry.alias_version(name, alias)
        recorded, previous = row.version or None, row.previous_version or None
        onto = desired is not None and (holder != desired or recorded != desired)
        if onto and not rehashed:
            return None  # moved by hand since the plan: its files are re-hashed first
        # ours: where we recorded it, where it was before a move of ours not yet confirmed
        # in MLflow, or where it belongs; anywhere else (or gone) someone else put it
        tampered = holder not in (recorded, previous, desired)
        if tampered:
            found = {"alias": alias, "holder": holder, "expected": desired, "recorded": recorded}
            _tamper(session, name, holder, "alias", found)
        if published is not None and published.status in PROMOTABLE_STATUSES:
            if published.model_version != desired:
                audit.record(
                    session,
                    actor=actor,
                    action="alias.kept",
                    target=f"{name}/{published.model_version}",
                    details={
                        "alias": alias,
                        "holder": desired,
                        "reason": "a newer version holds it, or this one is quarantined or "
                        "its files changed; the alias is on the newest promotable version",
                    },
                )
        if recorded != desired:
            row.previous_version = holder or 0
            row.version, row.updated_at = desired or 0, utcnow()
            row.run_id = published.id if published is not None else row.run_id
            audit.record(
                session,
                actor=actor,
                action="alias.set" if desired is not None else "alias.removed",
                target=f"{name}/{desired if desired is not None else holder}",
                details={
                    "alias": alias,
                    "previous": holder if holder != desired else None,
                    "found_in_mlflow": holder == desired,
                    "run_id": published.id if published is not None else None,
                    "rehashed": desired is not None,
                },
            )
    if published is not None:
        fault_point("publish:after-intent")
    if holder != desired:
        if desired is not None:
            registry.set_alias(name, alias, desired)
        else:
            registry.delete_alias(name, alias)
        ALIAS_MOVES.inc()
        log.info("model=%s alias %s: %s -> %s", name, alias, holder, desired)
    with transaction(settings.resolved_database_url) as session:
        # MLflow shows the move: no move is pending, so from now on the alias anywhere else
        # (or gone) is not ours
        confirmed = session.get(ModelPromotion, name)
        if confirmed is not None and confirmed.version == (desired or 0):
            confirmed.previous_version = confirmed.version
    if tampered and holder is not None and holder != desired:
        registry.set_version_tags(name, holder, {TagKey.STATUS: VersionState.TAMPERED})
    return AliasOutcome(holder, desired, tampered)


def _tamper(
    session: Session, name: str, version: int | None, kind: str, found: Mapping[str, Any]
) -> None:
    session.add(TamperEvent(model_name=name, version=version, kind=kind, found=dict(found)))
    audit.record(
        session,
        actor="gatekeeper",
        action=f"tamper.{kind}",
        target=f"{name}/{version if version is not None else '-'}",
        details=dict(found),
    )
    TAMPERING.labels(kind=kind).inc()
    log.warning("model=%s version=%s tampering (%s): %s", name, version, kind, dict(found))


def record_artifact_tampering(
    settings: Settings, name: str, version: int, found: Mapping[str, Any]
) -> None:
    with transaction(settings.resolved_database_url) as session:
        _tamper(session, name, version, "artifact", found)


@dataclass(frozen=True)
class ModelRecord:
    """What the database says of one model, read once: each version's latest finished run,
    the versions under an open incident, those whose files changed, and when each version
    was last found tampered with."""

    latest: dict[int, GateRun]
    quarantined: frozenset[int]
    artifact_tampered: frozenset[int]
    last_tamper: dict[int, dt.datetime]
    deleted: frozenset[int] = frozenset()

    @classmethod
    def read(cls, session: Session, name: str) -> ModelRecord:
        last: dict[int, dt.datetime] = {}
        events = session.execute(
            select(TamperEvent.version, TamperEvent.at).where(TamperEvent.model_name == name)
        )
        for version, at in events:
            if version is not None and (version not in last or at > last[version]):
                last[version] = at
        return cls(
            latest=latest_runs(session, name),
            quarantined=frozenset(quarantined_versions(session, name)),
            artifact_tampered=frozenset(artifact_tampered_versions(session, name)),
            last_tamper=last,
            deleted=frozenset(deleted_versions(session, name)),
        )

    def holder(self, exclude: frozenset[int] = frozenset()) -> int | None:
        """Where the alias belongs: the newest version whose latest run is promotable, not
        quarantined, files unchanged, still in MLflow (and not in `exclude`)."""
        excluded = self.quarantined | self.artifact_tampered | self.deleted | exclude
        promotable = [
            v for v, run in self.latest.items()
            if run.status in PROMOTABLE_STATUSES and v not in excluded
        ]  # fmt: skip
        return max(promotable, default=None)

    def status(self, version: int, run: GateRun | None) -> str | None:
        """What `gatekeeper.status` must say for the version whose latest run is `run`
        (None: no record)."""
        if version in self.quarantined:
            return VersionState.QUARANTINED
        if version in self.artifact_tampered:
            return VersionState.TAMPERED
        last_tamper = self.last_tamper.get(version)
        if run is None:
            return VersionState.TAMPERED if last_tamper is not None else None
        if (
            last_tamper is not None
            and run.finished_at is not None
            and last_tamper > run.finished_at
        ):
            return VersionState.TAMPERED
        return str(run.status)


def recorded_tags(
    settings: Settings, session: Session, record: ModelRecord, run: GateRun
) -> dict[str, str]:
    """The `gatekeeper.*` tags the record gives the run's version (the status says when the
    version is quarantined or was tampered with, whatever the run said)."""
    tags = final_tags(settings, run, signature_uri(session, run.id))
    tags[TagKey.STATUS] = record.status(run.model_version, run) or str(run.status)
    return tags


def _expected_tags(
    settings: Settings, session: Session, record: ModelRecord, version: int
) -> dict[str, str] | None:
    """The tags the record gives a version; only a status when it has no run (None: no
    record at all)."""
    run = record.latest.get(version)
    if run is not None:
        return recorded_tags(settings, session, record, run)
    status = record.status(version, None)
    return None if status is None else {TagKey.STATUS: status}


def guard_tags(
    settings: Settings,
    registry: RegistryPort,
    name: str,
    version: int,
    tags: Mapping[str, str],
    expected: dict[str, str] | None,
) -> bool:
    """Rewrite the version's `gatekeeper.*` tags where they differ from `expected` (what the
    record gives it); True when something was rewritten (and recorded as tampering)."""
    if expected is None or set(expected) == {TagKey.STATUS}:
        # no run recorded: only a final status claimed on the version can be wrong
        status = (expected or {}).get(TagKey.STATUS)
        claimed = tags.get(TagKey.STATUS)
        if claimed is None or claimed in ("running", "pending") or claimed == status:
            return False
        expected = {TagKey.STATUS: status or "pending"}
    expected = dict(expected)
    wrong = {k: v for k, v in expected.items() if tags.get(k) != v}
    if not wrong:
        return False
    relinked = {k: v for k, v in wrong.items() if _same_run_elsewhere(k, tags.get(k), v)}
    if relinked:
        log.warning(
            "model=%s version=%s: %s links the right run under another base URL (%s): "
            "GATEKEEPER_PUBLIC_URL differs between gatekeeper processes; rewritten, not "
            "recorded as tampering",
            name, version, TagKey.REPORT_URL, tags.get(TagKey.REPORT_URL),
        )  # fmt: skip
        if wrong.keys() == relinked.keys():
            registry.set_version_tags(name, version, relinked)
            return False
    with transaction(settings.resolved_database_url) as session:
        forged = {k: v for k, v in wrong.items() if k not in relinked}
        _tamper(session, name, version, "tag", {"tags": {k: tags.get(k) for k in forged},
                                                "expected": forged})  # fmt: skip
    if TagKey.STATUS in wrong:
        expected[TagKey.STATUS] = VersionState.TAMPERED  # the record now says: it was tampered with
    # only what is wrong, status last: whoever sees it sees every other tag
    rewrite = {k: v for k, v in expected.items() if k != TagKey.STATUS and k in wrong}
    if tags.get(TagKey.STATUS) != expected[TagKey.STATUS]:
        rewrite[TagKey.STATUS] = expected[TagKey.STATUS]
    registry.set_version_tags(name, version, rewrite)
    return True


def _same_run_elsewhere(key: str, found: str | None, expected: str) -> bool:
    """A report link to the right run under another base URL: a process configured with a
    different GATEKEEPER_PUBLIC_URL wrote it (a worker and the API, two replicas), which is
    configuration to fix, not a registry user's forgery. It is rewritten either way."""
    if key != TagKey.REPORT_URL or found is None or not found.startswith(("http://", "https://")):
        return False
    return found.rpartition("/runs/")[2] == expected.rpartition("/runs/")[2] != ""


def restore_tags(settings: Settings, registry: RegistryPort, name: str, version: int) -> None:
    """Write the version's tags from the record (the record changed: not tampering)."""
    with transaction(settings.resolved_database_url) as session:
        record = ModelRecord.read(session, name)
        run = record.latest.get(version)
        if run is None:
            return
        expected = recorded_tags(settings, session, record, run)
    registry.set_version_tags(name, version, expected)


def guard_model(
    settings: Settings, registry: RegistryPort, name: str, *, version: int | None = None
) -> None:
    """The alias and the versions' tags of one model against the record; with `version` (a
    tag event), that version's tags only. One guard per model at a time: our own rewrite
    sets tags one by one, and a guard reading between two of them would see a difference
    that is not there."""
    with model_lock(settings.resolved_database_url, name):
        _guard_model(settings, registry, name, version)


def _guard_model(
    settings: Settings, registry: RegistryPort, name: str, version: int | None
) -> None:
    window = settings.publish_window_s
    with transaction(settings.resolved_database_url) as session:
        publishing = being_published(session, name, window)
        busy = versions_in_progress(session, name) | publishing
    if publishing:
        # the publisher moves the alias by the same rule in a moment; the tags of the
        # version it publishes are its own until then (bounded: `publish_window_s`)
        log.info("model=%s alias left to the publisher of v%s", name, sorted(publishing))
    elif version is None:
        reconcile_alias(settings, registry, name)
    if version is None:
        listed = registry.versions_of(name)
    else:
        try:
            listed = [] if version in busy else [registry.get_version(name, version)]
        except RegistryNotFound:
            mark_version_deleted(settings, name, version, how="a tag event of a deleted version")
            return
    with transaction(settings.resolved_database_url) as session:  # read once per model
        record = ModelRecord.read(session, name)
        # a run recorded after the pass began is the publisher's too
        busy |= versions_in_progress(session, name) | being_published(session, name, window)
        listed = [info for info in listed if info.version not in busy]
        expected = {i.version: _expected_tags(settings, session, record, i.version) for i in listed}
    for info in listed:
        guard_tags(settings, registry, name, info.version, info.tags, expected[info.version])


def guarded_models(settings: Settings) -> list[str]:
    """Every model the gatekeeper has a record of."""
    with transaction(settings.resolved_database_url) as session:
        names = set(session.scalars(select(GateRun.model_name).distinct()))
        names |= set(session.scalars(select(ModelPromotion.model_name)))
    return sorted(names)


def fault_point(name: str) -> None:
    """`GATEKEEPER_FAULT_INJECT` kills the process here (the crash tests, nothing else)."""
    if os.environ.get("GATEKEEPER_FAULT_INJECT") == name:
        log.error("fault injected at %s: exiting now", name)
        os._exit(137)
