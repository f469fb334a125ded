"""The words the gatekeeper's parts share: run statuses, triggers, version states and the
registry tags it owns. One definition each; the ORM (service/store/tables.py), the decision,
the registry writers and the API import them from here, never from each other.
"""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    """A run's status; the last four are final and what the `gatekeeper.status` tag says."""

    QUEUED = "queued"
    RUNNING = "running"
    PASSED = "passed"
    WAIVED = "waived"  # passed only because a waiver let a blocking gate through
    FAILED = "failed"
    ERROR = "error"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


class Trigger(enum.StrEnum):
    """What asked for a run."""

    WEBHOOK = "webhook"
    POLLER = "poller"
    MANUAL = "manual"
    # a waiver that let the version through expired or was revoked: its recorded results
    # decided again without it (service/runs/waiver_end.py)
    WAIVER_ENDED = "waiver-ended"


FINISHED_STATUSES = frozenset(
    {RunStatus.PASSED, RunStatus.WAIVED, RunStatus.FAILED, RunStatus.ERROR}
)
# What deploy jobs may take: the alias moves to these, and only these are trusted as champion.
PROMOTABLE_STATUSES = frozenset({RunStatus.PASSED, RunStatus.WAIVED})


class VersionState(enum.StrEnum):
    """What `gatekeeper.status` says of a version beyond its run's status."""

    TAMPERED = "tampered"  # its alias, tags or stored files were changed by someone else
    QUARANTINED = "quarantined"  # under an open incident


# every tag the gatekeeper owns starts so (TagKey, and the per-gate `gatekeeper.gate.<g>`)
TAG_PREFIX = "gatekeeper."


class TagKey(enum.StrEnum):
    """The registry tags the gatekeeper owns (it writes them; anything else is tampering)."""

    STATUS = "gatekeeper.status"
    RUN_ID = "gatekeeper.run_id"
    REPORT_URL = "gatekeeper.report_url"
    POLICY_DIGEST = "gatekeeper.policy_digest"
    ARTIFACT_DIGEST = "gatekeeper.artifact_digest"
    FINDING = "gatekeeper.finding"
    SUMMARY = "gatekeeper.summary"
    SIGNATURE_URI = "gatekeeper.signature_uri"

    @staticmethod
    def gate(name: str) -> str:
        """`gatekeeper.gate.<name>`: what the decision made of one gate."""
        return f"{TAG_PREFIX}gate.{name}"
