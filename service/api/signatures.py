"""The gatekeeper's public key (no token: it is public), the signature of a version, and the
signed answers a deploy job checks against that key: a version's status now, and the
revocation list for offline checks (service/runs/version_status.py)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import select

from service.api.deps import ReadSession, SettingsDep, ViewerPrincipal
from service.api.schemas import error_responses
from service.errors import NotFound
from service.integrity.envelope import REVOCATIONS_TYPE, STATUS_TYPE, sign_envelope
from service.integrity.keys import signing_key
from service.runs.version_status import revocations, version_status
from service.store.tables import ArtifactSignature, utcnow

router = APIRouter(prefix="/api/v1", tags=["signatures"])

ModelName = Annotated[str, Path(min_length=1, max_length=256)]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/keys/public", response_class=Response, responses=error_responses(503))
def public_key(settings: SettingsDep) -> Response:
    """PEM of the key passing artifacts are signed with (model_signing verify key takes it).
    Pin it (the file, or its fingerprint in `X-Key-Id`): fetched over plain HTTP it proves
    nothing."""
    key = signing_key(settings.signing_key_path, settings.data_dir)
    return Response(
        key.public_pem, media_type="application/x-pem-file", headers={"X-Key-Id": key.key_id}
    )


@router.get(
    "/models/{name}/versions/{version}/signature",
    response_class=Response,
    responses=error_responses(401, 403, 404, 503),
)
def version_signature(
    _viewer: ViewerPrincipal, name: ModelName, version: VersionNumber, session: ReadSession
) -> Response:
    """The newest signature bundle of the version (a sigstore bundle, JSON)."""
    row = session.scalars(
        select(ArtifactSignature)
        .where(ArtifactSignature.model_name == name, ArtifactSignature.version == version)
        .order_by(ArtifactSignature.created_at.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFound(f"{name} v{version} has no signature: it never passed")
    headers = {"X-Artifact-Digest": row.artifact_digest, "X-Key-Id": row.key_id}
    return Response(row.bundle, media_type="application/json", headers=headers)


@router.get("/models/{name}/versions/{version}/status", responses=error_responses(401, 403, 503))
def signed_version_status(
    _viewer: ViewerPrincipal,
    name: ModelName,
    version: VersionNumber,
    session: ReadSession,
    settings: SettingsDep,
    nonce: Annotated[str, Query(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")],
) -> dict[str, Any]:
    """Is this version promotable now, and does the record put the alias on it? A DSSE
    envelope signed with the artifact key, echoing the caller's nonce (no replay of an old
    answer). `gatekeeper verify` asks this before it says yes."""
    status = version_status(session, name, version)
    payload = {
        **status.document(),
        "alias": settings.alias,
        "nonce": nonce,
        "issued_at": utcnow().isoformat(),
    }
    key = signing_key(settings.signing_key_path, settings.data_dir)
    return sign_envelope(key.private_path, STATUS_TYPE, payload)


@router.get("/revocations", responses=error_responses(401, 403, 503))
def signed_revocations(
    _viewer: ViewerPrincipal, session: ReadSession, settings: SettingsDep
) -> dict[str, Any]:
    """Every signature whose version is not promotable now (quarantined, files changed,
    superseded by a run that did not pass, its waiver ended, deleted), and where the record
    puts each model's alias; signed, valid for `GATEKEEPER_REVOCATIONS_VALID_S`. What
    `gatekeeper verify --revocations FILE` checks when the gatekeeper cannot be reached."""
    revoked, holders = revocations(session)
    now = utcnow()
    payload = {
        "issued_at": now.isoformat(),
        "expires_at": (now + dt.timedelta(seconds=settings.revocations_valid_s)).isoformat(),
        "alias": settings.alias,
        "holders": holders,
        "revoked": [r.document() for r in revoked],
    }
    key = signing_key(settings.signing_key_path, settings.data_dir)
    return sign_envelope(key.private_path, REVOCATIONS_TYPE, payload)
