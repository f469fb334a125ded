"""OpenSSF model signing (the `model-signing` library): sign a directory, verify one.

The bundle is a sigstore bundle with a DSSE envelope around an in-toto statement listing
every file's sha256; `model_signing verify key DIR --public_key PUB --signature SIG` checks
it with nothing of ours. Only passing (or waived) versions are ever signed, so a valid
signature means: the gatekeeper let these exact files through.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from service.errors import GatekeeperError

SIGNATURE_NAME = "model.sig"


class VerificationFailed(GatekeeperError):
    """The files do not match the signature, or the signature is not the key's."""

    http_status = 422


def sign_directory(directory: Path, private_key: Path) -> str:
    """The signature bundle (JSON text) over every file under `directory`."""
    import model_signing

    with tempfile.TemporaryDirectory(prefix="gatekeeper-sign-") as tmp:
        out = Path(tmp) / SIGNATURE_NAME
        config = model_signing.signing.Config().use_elliptic_key_signer(private_key=private_key)
        config.sign(directory, out)
        return out.read_text(encoding="utf-8")


_MISMATCH = re.compile(r"Hash mismatch for '([^']+)'")


def verify_directory(directory: Path, bundle: str, public_key: Path) -> None:
    """Raises VerificationFailed naming the first file that differs, or why it failed."""
    import model_signing

    with tempfile.TemporaryDirectory(prefix="gatekeeper-verify-") as tmp:
        signature = Path(tmp) / SIGNATURE_NAME
        signature.write_text(bundle, encoding="utf-8")
        config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key)
        try:
            config.verify(directory, signature)
        except Exception as exc:  # the library raises ValueError and others; all mean "no"
            text = str(exc)
            changed = _MISMATCH.search(text)
            if changed:
                raise VerificationFailed(
                    f"{changed.group(1)} is not the file the gatekeeper signed"
                ) from exc
            raise VerificationFailed(f"signature verification failed: {text[:500]}") from exc
