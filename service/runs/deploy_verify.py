"""`gatekeeper verify`: what a deploy job runs before it deploys a model.

Resolves `models:/NAME@ALIAS` (or `models:/NAME/VERSION`) to one version once, downloads
that version's files, fetches the signature the gatekeeper logged for it (the version's
`gatekeeper.signature_uri`: a tag anyone can set, which is fine: only a bundle made with the
gatekeeper's key verifies) and checks every file with the model-signing library against the
gatekeeper's public key. The job then deploys exactly the directory that was verified.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from service.errors import BadRequest
from service.integrity.signing import VerificationFailed, verify_directory
from service.mlflow.registry import Registry

_MODEL_URI = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class Verified:
    name: str
    version: int
    path: Path


def parse_model_uri(uri: str) -> tuple[str, str | None, int | None]:
    match = _MODEL_URI.match(uri)
    if match is None:
        raise BadRequest(f"{uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    version = match.group("version")
    return match.group("name"), match.group("alias"), int(version) if version else None


def verify_model(
    registry: Registry, uri: str, public_key: Path, download_to: Path | None = None
) -> Verified:
    name, alias, version = parse_model_uri(uri)
    if version is None:
        assert alias is not None
        version = registry.alias_version(name, alias)  # resolved once: no race with a move
        if version is None:
            raise VerificationFailed(f"{name} has no alias {alias!r}: nothing to deploy")
    info = registry.get_version(name, version)
    signature_uri = info.tags.get("gatekeeper.signature_uri")
    if not signature_uri or not signature_uri.startswith("runs:/"):
        raise VerificationFailed(f"{name} v{version} has no gatekeeper signature")
    target = download_to or Path(tempfile.mkdtemp(prefix=f"verified-{name}-v{version}-"))
    files = registry.download_artifacts(name, version, target)
    run_id, _, artifact_path = signature_uri.removeprefix("runs:/").partition("/")
    with tempfile.TemporaryDirectory(prefix="gatekeeper-signature-") as tmp:
        bundle_path = registry.download_run_artifact(run_id, artifact_path, Path(tmp))
        bundle = bundle_path.read_text(encoding="utf-8")
    verify_directory(files, bundle, public_key)
    return Verified(name, version, files)
