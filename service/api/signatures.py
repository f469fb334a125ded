"""The gatekeeper's public key (no token: it is public) and the signature of a version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlalchemy import select

from service.api.deps import CurrentPrincipal, SessionDep, SettingsDep
from service.errors import NotFound
from service.integrity.keys import signing_key
from service.store.auth import Role
from service.store.tables import ArtifactSignature

router = APIRouter(prefix="/api/v1", tags=["signatures"])


@router.get("/keys/public", response_class=Response)
def public_key(settings: SettingsDep) -> Response:
    """PEM of the key passing artifacts are signed with (model_signing verify key takes it)."""
    key = signing_key(settings.signing_key_path, settings.data_dir)
    return Response(
        key.public_pem, media_type="application/x-pem-file", headers={"X-Key-Id": key.key_id}
    )


@router.get("/models/{name}/versions/{version}/signature", response_class=Response)
def version_signature(
    name: Annotated[str, Path(min_length=1, max_length=256)],
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Response:
    """The newest signature bundle of the version (a sigstore bundle, JSON)."""
    principal.require(Role.VIEWER)
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
