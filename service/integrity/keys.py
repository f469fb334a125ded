"""The gatekeeper's ECDSA P-256 signing key (the curve model-signing's key signer takes;
it refuses Ed25519).

`GATEKEEPER_SIGNING_KEY_PATH` names a PEM private key; unset, one is generated in the data
dir on first start (`signing/key.pem`, mode 0600) beside its public key (`signing/key.pub`).
Workers on other machines must share it (the compose file mounts one volume for that).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.errors import ConfigError


@dataclass(frozen=True)
class SigningKey:
    private_path: Path
    public_pem: bytes

    @property
    def key_id(self) -> str:
        """sha256 of the public key's DER: names the key in records and messages, and is the
        fingerprint a deploy job pins (`GATEKEEPER_KEY_FINGERPRINT`)."""
        return key_id_of(self.public_pem)


def key_id_of(public_pem: bytes) -> str:
    """The fingerprint of a PEM public key: sha256 of its DER SubjectPublicKeyInfo."""
    try:
        public = serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not a PEM public key: {exc}") from exc
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def generate_key_pair(private_path: Path) -> SigningKey:
    """A new P-256 pair: the private key written 0600 (never readable by others, even for a
    moment), the public key beside it as `<name>.pub`."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    private_path.with_suffix(".pub").write_bytes(public_pem)
    return SigningKey(private_path, public_pem)


def load_key(private_path: Path) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"signing key {private_path} cannot be read: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(
            f"signing key {private_path} is not an ECDSA P-256 key (model-signing's key "
            "signer takes only that; generate one with `gatekeeper keys generate`)"
        )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKey(private_path, public_pem)


def signing_key(configured: Path | None, data_dir: Path) -> SigningKey:
    """The configured key, or the data dir's own, generated on first use."""
    if configured is not None:
        return load_key(configured)
    default = data_dir / "signing" / "key.pem"
    if default.exists():
        return load_key(default)
    try:
        return generate_key_pair(default)
    except FileExistsError:  # another process of this installation made it first
        return load_key(default)
