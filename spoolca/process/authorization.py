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
from spoolca.keys.openpgp import Keyring

__all__ = ["PROFILE_NOTATION", "SignerCheck"]

PROFILE_NOTATION = "profile@spoolca"  # the signed notation naming a request's profile



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

    def check(self, data: bytes, signature: bytes | None, authorized: tuple[str, ...],
              profile: str | None = None, elsewhere: frozenset[str] = frozenset()
              ) -> tuple[str | None, Finding | None]:
        """(signer fingerprint, None) if authorized; else (None, the finding why not).

        A signature authorizes bytes, not a folder: a request signed for one profile and
        moved into another would pass if its signer may sign both. So a signer authorized
        for PROFILE and also for other profiles (ELSEWHERE: their signers) must name the
        profile in the signature itself, as a signed notation
        (`gpg --sig-notation profile@spoolca=PROFILE`); a signer of one profile need not."""
        revocation = profile is None  # a revocation request: [signers] revokers decide
        if signature is None:
            return None, Finding("request.signature_missing", (
                "a revocation request must come with its signer's detached signature "
                "(NAME.json.asc beside NAME.json)") if revocation else (
                "this profile requires the request's detached signature beside it "
                "(NAME.csr.asc beside NAME.csr)"))
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
            whom = "one of [signers] revokers" if revocation else \
                "an authorized signer of this profile"
            return None, Finding("request.signer_not_authorized", f"the request is signed by "
                                 f"{verdict.fingerprint}, which is not {whom}")
        named = [value for name, value in verdict.notations if name == PROFILE_NOTATION]
        if profile is not None and (named or verdict.fingerprint in elsewhere) and \
                named != [profile]:
            said = f"names the profile {named[0]!r}" if named else "names no profile"
            return None, Finding("request.signature_profile_mismatch", f"the signature {said}, "
                                 f"and its signer may sign for more than one profile: sign "
                                 f"for this one with gpg --sig-notation "
                                 f"{PROFILE_NOTATION}={profile} (a request moved to another "
                                 "folder is not issued under it)")
        return verdict.fingerprint, None
