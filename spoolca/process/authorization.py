"""Request authorization: a profile may require each CSR to carry an authorized
signer's detached OpenPGP signature (`name.csr.asc`).

Signatures are checked against the configured keyring only (imported once into a
temporary gnupg home), with fingerprints pinned and exactly one good signature
required; each way of failing has its own finding code, and the signer's fingerprint
goes into the register and the audit log.
"""

from __future__ import annotations

from pathlib import Path

from spoolca.errors import ConfigError
from spoolca.findings import Finding
from spoolca.openpgp import Keyring

__all__ = ["SignerCheck"]



class SignerCheck:
    """Verifies request signatures against one keyring, kept for the processor's life."""

    def __init__(self, keyring: Path, owner: str = "") -> None:
        try:
            armored = keyring.read_text()
        except OSError as exc:
            raise ConfigError(str(keyring), [f"the signers' keyring cannot be read: "
                                             f"{exc.strerror}"]) from None
        self._keyring = Keyring(armored, owner)

    def close(self) -> None:
        self._keyring.close()

    def check(self, data: bytes, signature: bytes | None,
              authorized: tuple[str, ...]) -> tuple[str | None, Finding | None]:
        """(signer fingerprint, None) if authorized; else (None, the finding why not)."""
        if signature is None:
            return None, Finding("request.signature_missing", "this profile requires a "
                                 "detached signature NAME.csr.asc beside the request")
        verdict = self._keyring.verify(data, signature)
        if verdict.kind == "expired":
            return None, Finding("request.signature_expired", "the request's signature or "
                                 f"signing key has expired ({verdict.detail})")
        if verdict.kind == "unknown key":
            return None, Finding("request.signer_unknown", "the request is signed by a key "
                                 f"that is not in the signers' keyring ({verdict.detail})")
        if verdict.kind != "good" or verdict.fingerprint is None:
            return None, Finding("request.signature_invalid", "the request's signature does "
                                 f"not verify ({verdict.detail})")
        if verdict.fingerprint not in {f.upper().replace(" ", "") for f in authorized}:
            return None, Finding("request.signer_not_authorized", f"the request is signed by "
                                 f"{verdict.fingerprint}, which is not an authorized signer "
                                 "of this profile")
        return verdict.fingerprint, None
