"""The audit log's event catalogue: every kind of entry, and what its data holds.

The auditor's reference (docs/reference/audit-events.md, `man spoolca`) is made from here;
tests/test_manual.py fails when the code records a name that is not here, or this lists
one the code no longer records, and the model test checks every entry its runs write.
"""

from __future__ import annotations

__all__ = ["EVENTS"]

EVENTS: dict[str, str] = {
    "ca.initialized": "`spoolca init` made the CAs: subjects, key types, certificate "
    "fingerprints, the configuration's hash",
    "ca.imported": "an OpenSSL or easy-rsa CA was brought in: its source, what was taken, "
    "every discrepancy and how it was resolved",
    "ceremony.recorded": "the ceremony record was written: its SHA-256 and the witnesses",
    "ca.renewed": "a CA got a new certificate for its same key: both certificates' SHA-256 "
    "and ends",
    "ca.rekeyed": "the intermediate got a new key and certificate (a new generation)",
    "ca.cross_signed": "our root certified another root: the cross-certificate's SHA-256",
    "ca.cross_requested": "a CSR of our root for an external root to cross-sign",
    "config.loaded": "the configuration in force: its SHA-256 (at start and on reload)",
    "key.unlocked": "a CA key was unlocked for an operation: which key, for what",
    "service.started": "the daemon started",
    "service.stopped": "the daemon stopped",
    "request.issued": "a certificate was issued: serial, subject, names, profile, "
    "notAfter, the certificate's and the request's SHA-256, the signer if signed",
    "request.rejected": "a request was refused: every finding code, the request's SHA-256",
    "request.republished": "a request sent again got its recorded answer again",
    "request.reconsidered": "the operator had a rejected request decided afresh "
    "(`spoolca reconsider`): the earlier decision's date and codes",
    "request.quarantined": "a request that stopped the service more than once was set aside "
    "unread: its file and SHA-256",
    "revocation_request.rejected": "a revocation request was refused: every finding code",
    "certificate.revoked": "a certificate was revoked: serial, reason, invalidity date, who "
    "asked (the operator, or a revocation request's signer)",
    "certificate.unheld": "a certificate on hold was released (removeFromCRL): it is valid "
    "again and leaves the next CRL",
    "crl.published": "a CRL was signed: CA, number, thisUpdate, nextUpdate, SHA-256; "
    "`extended` for an emergency re-sign (`spoolca crl --extend`), and the pre-signed "
    "series it voids",
    "ssh.ca_created": "`spoolca ssh init`: the SSH user and host CA public keys, their key "
    "type, whether encrypted at rest",
    "ssh.issued": "an OpenSSH certificate was signed: CA, serial, key ID, principals, "
    "valid_before, profile, the request's SHA-256, the signer if signed",
    "ssh.revoked": "SSH certificates were revoked (the KRL remade): CA, serials, key IDs, "
    "principals, who asked (a signed request's signer) and the reason given",
    "trip.closed": "`spoolca trip close`: the next trip planned, the return window then, "
    "and the lapse the operator accepted (--accept-lapse) if the trip comes after it",
    "crl.presigned": "`spoolca crl --presign N`: a series of future CRLs per CA (numbers, "
    "thisUpdates, SHA-256s, until when they cover) and the statement that none can carry a "
    "revocation made later",
    "crl.return_window": "after CRLs were made: the window for the stick's return (from, "
    "until, when the first CA's CRLs lapse, the margin, whether a pre-signed series "
    "covers it)",
    "audit.exported": "the log was exported up to a signed checkpoint: where, up to which "
    "entry",
    "media.ingested": "a stick's requests were copied in: the stick (its secret's digest, "
    "UUID, label), each file taken and as what, what was left and why",
    "media.exported": "results went out on a stick: the stick, the results it carries, the "
    "audit head it carries",
    "backup.made": "a backup archive was made: its SHA-256, the audit head it holds",
    "backup.restored": "this state directory was restored from a backup: the archive's "
    "SHA-256 and head",
    "register.caught_up": "a catch-up folded back what the appliance published and the "
    "register lacked: how many of each",
    "clock.confirmed": "the operator confirmed the system clock against a trusted one",
    "clock.repaired": "the operator set the clock floor back after a wrong clock dated "
    "entries ahead",
    "shares.issued": "the unlock secret was split among custodians: K, N, the names",
    "shares.reissued": "a new share set for the same secret: K, N, the names",
    "shares.rotated": "a new unlock secret: the keys at rest re-protected, new shares",
    "shares.combined": "shares were combined to install the secret",
    "shares.checked": "the yearly drill: the shares recover the current secret",
}
