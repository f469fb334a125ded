"""`gatekeeper verify`: "is this exactly the version the gatekeeper holds promotable now?"

What a deploy job runs before it deploys. Resolves `models:/NAME@ALIAS` (or
`models:/NAME/VERSION`) to one version once, downloads that version's files and the
signature bundle the gatekeeper logged for it (the `gatekeeper.signature_uri` tag: anyone can
set it, which is fine, see below), then:

1. the bundle verifies over every file with the PINNED public key (a file, or a key whose
   fingerprint is pinned; never a key taken on trust from the network), and its manifest
   ignores nothing;
2. the signed statement names this model and this version, the key's fingerprint, and the
   artifact digest of the files just downloaded;
3. the gatekeeper says, in an answer signed with the same key and bound to a fresh nonce,
   that the version is promotable now (not quarantined, tampered with, superseded by a run
   that did not pass, let through by a waiver that has ended, deleted) and judged these
   files; for an alias, that the record puts the alias on it. Offline, a signed revocation
   list the gatekeeper published (`GET /api/v1/revocations`) answers instead, within its
   validity.

The job then deploys exactly the directory that was verified.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from service.errors import BadRequest, GatekeeperError
from service.integrity.envelope import REVOCATIONS_TYPE, STATUS_TYPE, open_envelope
from service.integrity.keys import key_id_of
from service.integrity.signing import SignedClaims, VerificationFailed, verify_directory
from service.mlflow.fetch import build_manifest, manifest_digest
from service.mlflow.registry import Registry
from service.vocabulary import TagKey

_MODEL_URI = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class StatusUnavailable(GatekeeperError):
    """The gatekeeper's answer could not be had (unreachable, refused the token): nothing
    was verified, so nothing may be deployed."""

    http_status = 503


@dataclass(frozen=True)
class Verified:
    name: str
    version: int
    path: Path
    claims: SignedClaims
    status_source: str  # "gatekeeper" or "revocation list issued at ..."


@dataclass(frozen=True)
class Asked:
    """What the deploy job asked for, resolved once."""

    name: str
    version: int
    alias: str | None  # set when the job named the alias, not a version


def parse_model_uri(uri: str) -> tuple[str, str | None, int | None]:
    match = _MODEL_URI.match(uri)
    if match is None:
        raise BadRequest(f"{uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    version = match.group("version")
    return match.group("name"), match.group("alias"), int(version) if version else None


class StatusCheck(Protocol):
    """Says whether the gatekeeper holds `asked` promotable now with the files of `claims`."""

    def check(self, asked: Asked, claims: SignedClaims) -> str: ...


def verify_model(
    registry: Registry,
    uri: str,
    public_key: Path,
    status: StatusCheck,
    download_to: Path | None = None,
) -> Verified:
    name, alias, version = parse_model_uri(uri)
    if version is None:
        assert alias is not None
        version = registry.alias_version(name, alias)  # resolved once: no race with a move
        if version is None:
            raise VerificationFailed(f"{name} has no alias {alias!r}: nothing to deploy")
    asked = Asked(name, version, alias)
    info = registry.get_version(name, version)
    signature_uri = info.tags.get(TagKey.SIGNATURE_URI)
    if not signature_uri or not signature_uri.startswith("runs:/"):
        raise VerificationFailed(f"{name} v{version} has no gatekeeper signature")
    target = download_to or Path(tempfile.mkdtemp(prefix=f"verified-{name}-v{version}-"))
    try:
        files = registry.download_artifacts(name, version, target)
        run_id, _, artifact_path = signature_uri.removeprefix("runs:/").partition("/")
        with tempfile.TemporaryDirectory(prefix="gatekeeper-signature-") as tmp:
            bundle_path = registry.download_run_artifact(run_id, artifact_path, Path(tmp))
            bundle = bundle_path.read_text(encoding="utf-8")
        claims = verify_directory(files, bundle, public_key)
        _check_claims(asked, claims, public_key, files)
        source = status.check(asked, claims)
    except BaseException:
        if download_to is None:  # files that did not verify are not left lying about
            shutil.rmtree(target, ignore_errors=True)
        raise
    return Verified(name, version, files, claims, source)


def _check_claims(asked: Asked, claims: SignedClaims, public_key: Path, files: Path) -> None:
    if (claims.model, claims.version) != (asked.name, asked.version):
        raise VerificationFailed(
            f"the signature is for {claims.model} v{claims.version}, not {asked.name} "
            f"v{asked.version}: a bundle replayed from another version"
        )
    if claims.key_id != key_id_of(public_key.read_bytes()):
        raise VerificationFailed("the signed statement names another key than the pinned one")
    digest = manifest_digest(build_manifest(files))
    if digest != claims.artifact_digest:
        raise VerificationFailed(
            f"the downloaded files hash to {digest[:16]}..., the verdict was about "
            f"{claims.artifact_digest[:16]}..."
        )


@dataclass(frozen=True)
class OnlineStatus:
    """The gatekeeper's signed answer for this version, bound to a fresh nonce."""

    base_url: str
    token: str
    public_pem: bytes
    timeout_s: float = 30.0

    def check(self, asked: Asked, claims: SignedClaims) -> str:
        import httpx

        nonce = secrets.token_urlsafe(24)
        url = (
            f"{self.base_url.rstrip('/')}/api/v1/models/{quote(asked.name, safe='')}"
            f"/versions/{asked.version}/status"
        )
        try:
            answer = httpx.get(
                url,
                params={"nonce": nonce},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise StatusUnavailable(f"cannot ask the gatekeeper at {self.base_url}: {exc}") from exc
        if answer.status_code in (401, 403):
            raise StatusUnavailable(
                f"the gatekeeper refused the token ({answer.status_code}): a viewer token is "
                "needed (GATEKEEPER_TOKEN or --token)"
            )
        if not answer.is_success:
            raise StatusUnavailable(f"the gatekeeper answered {answer.status_code}")
        try:
            envelope = answer.json()
        except ValueError as exc:
            raise VerificationFailed("the gatekeeper's answer is not JSON") from exc
        status = open_envelope(self.public_pem, STATUS_TYPE, envelope)
        if status.get("nonce") != nonce:
            raise VerificationFailed("the status answer is not for this request (a replay)")
        _judge_status(asked, claims, status)
        return "gatekeeper"


def _judge_status(asked: Asked, claims: SignedClaims, status: dict[str, Any]) -> None:
    if (status.get("model"), status.get("version")) != (asked.name, asked.version):
        raise VerificationFailed("the status answer is about another version")
    if not status.get("promotable"):
        reasons = "; ".join(str(r) for r in status.get("reasons") or []) or "no reason given"
        raise VerificationFailed(
            f"the gatekeeper does not hold {asked.name} v{asked.version} promotable now: {reasons}"
        )
    if status.get("artifact_digest") != claims.artifact_digest:
        raise VerificationFailed(
            "the version's latest passing run judged other files than the signed ones"
        )
    _judge_alias(asked, status.get("alias"), bool(status.get("alias_holder")))


def _judge_alias(asked: Asked, alias: Any, holds: bool) -> None:
    if asked.alias is None:
        return
    if asked.alias != alias:
        raise VerificationFailed(
            f"the gatekeeper guards the alias {alias!r}, not {asked.alias!r}: ask for a version"
        )
    if not holds:
        raise VerificationFailed(
            f"{asked.name}@{asked.alias} points at v{asked.version} in MLflow, but the "
            "gatekeeper's record does not put the alias there (moved by hand?)"
        )


@dataclass(frozen=True)
class OfflineStatus:
    """A revocation list the gatekeeper signed, within its validity."""

    document: Any
    public_pem: bytes

    def check(self, asked: Asked, claims: SignedClaims) -> str:
        listed = open_envelope(self.public_pem, REVOCATIONS_TYPE, self.document)
        try:
            issued = dt.datetime.fromisoformat(str(listed["issued_at"]))
            expires = dt.datetime.fromisoformat(str(listed["expires_at"]))
        except (KeyError, ValueError) as exc:
            raise VerificationFailed(f"the revocation list is malformed: {exc}") from exc
        if expires <= dt.datetime.now(dt.UTC):
            raise VerificationFailed(
                f"the revocation list expired at {expires.isoformat()}; fetch a new one "
                "(GET /api/v1/revocations)"
            )
        for entry in listed.get("revoked") or []:
            if not isinstance(entry, dict):
                continue
            same = (entry.get("model"), entry.get("version"), entry.get("artifact_digest"))
            if same == (asked.name, asked.version, claims.artifact_digest):
                reasons = "; ".join(str(r) for r in entry.get("reasons") or [])
                raise VerificationFailed(
                    f"{asked.name} v{asked.version} is revoked (list of {issued.isoformat()}): "
                    f"{reasons}"
                )
        holders = listed.get("holders")
        holds = isinstance(holders, dict) and holders.get(asked.name) == asked.version
        _judge_alias(asked, listed.get("alias"), holds)
        return f"revocation list issued at {issued.isoformat()}"
