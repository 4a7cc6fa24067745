"""Request authorization: a profile may require each CSR to carry an authorized
signer's detached OpenPGP signature (`name.csr.asc`).

Signatures are checked against the configured keyring only (imported once into a
temporary gnupg home), with fingerprints pinned and exactly one good signature
required; each way of failing has its own finding code, and the signer's fingerprint
goes into the register and the audit log.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import gnupg

from spoolca.errors import ConfigError
from spoolca.findings import Finding
from spoolca.openpgp import stop_agent

__all__ = ["SignerCheck"]



def _troubles(result: gnupg.Verify) -> str:
    """Everything python-gnupg noticed, lower case. With an expired or revoked key it
    still reports status 'signature valid' (gpg sends VALIDSIG after EXPKEYSIG); only
    key_status and problems tell, so both are read."""
    parts = [result.status or "", getattr(result, "key_status", "") or ""]
    parts += [str(p.get("status", "")) for p in getattr(result, "problems", [])]
    return " | ".join(parts).lower()


class SignerCheck:
    """Verifies request signatures against one keyring, kept for the processor's life."""

    def __init__(self, keyring: Path) -> None:
        try:
            armored = keyring.read_text()
        except OSError as exc:
            raise ConfigError(str(keyring), [f"the signers' keyring cannot be read: "
                                             f"{exc.strerror}"]) from None
        self._home = Path(tempfile.mkdtemp(prefix="spoolca-signers-"))
        self._gpg = gnupg.GPG(gnupghome=str(self._home))
        self._gpg.import_keys(armored)

    def close(self) -> None:
        stop_agent(self._home)
        shutil.rmtree(self._home, ignore_errors=True)

    def check(self, data: bytes, signature: bytes | None,
              authorized: tuple[str, ...]) -> tuple[str | None, Finding | None]:
        """(signer fingerprint, None) if authorized; else (None, the finding why not)."""
        if signature is None:
            return None, Finding("request.signature_missing", "this profile requires a "
                                 "detached signature NAME.csr.asc beside the request")
        signature_file = self._home / "request.sig"
        signature_file.write_bytes(signature)
        result = self._gpg.verify_data(str(signature_file), data)
        infos = list(getattr(result, "sig_info", {}).values())
        status = _troubles(result)
        if "expired" in status:
            return None, Finding("request.signature_expired",
                                 f"the request's signature or signing key has expired ({status})")
        if "no public key" in status:
            return None, Finding("request.signer_unknown", f"the request is signed by key "
                                 f"{result.key_id}, which is not in the signers' keyring")
        good = [i for i in infos if i.get("status") == "signature valid"]
        if not result.valid or len(infos) != 1 or len(good) != 1 or \
                getattr(result, "problems", None) or getattr(result, "key_status", None):
            return None, Finding("request.signature_invalid", "the request's signature does "
                                 f"not verify ({status or 'no signature found'})")
        fingerprint = str(good[0].get("pubkey_fingerprint") or result.fingerprint).upper()
        if fingerprint not in {f.upper().replace(" ", "") for f in authorized}:
            return None, Finding("request.signer_not_authorized", f"the request is signed by "
                                 f"{fingerprint}, which is not an authorized signer of this "
                                 "profile")
        return fingerprint, None
