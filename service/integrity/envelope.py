"""Signed answers: a JSON payload in a DSSE envelope, signed with the gatekeeper's key.

The version status a deploy job asks for and the revocation list it may carry offline are
signed like the artifacts are (same ECDSA P-256 key, DSSE's pre-authentication encoding), so
a man in the middle of a plain-HTTP connection can neither forge nor alter them: the client
checks them against the public key it pinned. DSSE itself is five lines (the PAE); the
sigstore libraries we have expose it only through their private modules, so it is written
here.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.integrity.keys import key_id_of
from service.integrity.signing import VerificationFailed

STATUS_TYPE = "application/vnd.mlflow-gatekeeper.version-status.v1+json"
REVOCATIONS_TYPE = "application/vnd.mlflow-gatekeeper.revocations.v1+json"


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is signed (type and body, length-framed)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def sign_envelope(private_key: Path, payload_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # keys.load_key refuses anything else
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    signature = key.sign(pae(payload_type, body), ec.ECDSA(hashes.SHA256()))
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(body).decode(),
        "signatures": [
            {"keyid": key_id_of(public_pem), "sig": base64.b64encode(signature).decode()}
        ],
    }


def open_envelope(public_pem: bytes, payload_type: str, envelope: Any) -> dict[str, Any]:
    """The payload of an envelope signed by the key `public_pem`, of type `payload_type`;
    VerificationFailed for anything else (another key, another type, altered bytes)."""
    try:
        if not isinstance(envelope, dict) or envelope.get("payloadType") != payload_type:
            raise VerificationFailed(f"not a signed {payload_type} document")
        body = base64.b64decode(str(envelope["payload"]), validate=True)
        signatures = envelope["signatures"]
        if not isinstance(signatures, list) or len(signatures) != 1:
            raise VerificationFailed("a signed answer carries exactly one signature")
        signature = base64.b64decode(str(signatures[0]["sig"]), validate=True)
        key = serialization.load_pem_public_key(public_pem)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise VerificationFailed("the pinned public key is not an ECDSA key")
        key.verify(signature, pae(payload_type, body), ec.ECDSA(hashes.SHA256()))
        payload = json.loads(body)
    except InvalidSignature as exc:
        raise VerificationFailed(
            "the answer is not signed by the pinned gatekeeper key (altered in transit, or "
            "another gatekeeper's)"
        ) from exc
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise VerificationFailed(f"malformed signed answer: {exc}") from exc
    if not isinstance(payload, dict):
        raise VerificationFailed("malformed signed answer: the payload is not an object")
    return payload
