"""The register's schema, and the steps that bring an older register up to it.

Each migration is one script run in one transaction when the register is opened; a
register is never opened at a schema this code does not know.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA", "SCHEMA_VERSION"]

SCHEMA_VERSION = 7

# OpenSSH certificates (issue 30): in the schema and in the migration from 6, as is.
SSH_CERTIFICATES = """
CREATE TABLE IF NOT EXISTS ssh_certificates (
    ca TEXT NOT NULL,              -- "user" or "host": the SSH CA that signed it
    serial INTEGER NOT NULL,       -- random, 1..2^63-1, unique per CA
    key_id TEXT NOT NULL,
    principals TEXT NOT NULL,      -- JSON list
    profile TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    valid_after TEXT NOT NULL,
    valid_before TEXT NOT NULL,
    certificate TEXT NOT NULL,     -- the OpenSSH certificate line, as published
    revoked_at TEXT,
    PRIMARY KEY (ca, serial)
);
CREATE INDEX IF NOT EXISTS ssh_certificates_key_id ON ssh_certificates (ca, key_id);
"""

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE authorities (
    name TEXT PRIMARY KEY,
    parent TEXT,
    cert_der BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE requests (
    sha256 TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('issued', 'rejected')),
    decided_at TEXT NOT NULL,
    csr_der BLOB,
    findings TEXT NOT NULL DEFAULT '[]',
    serial TEXT
);
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    issuer TEXT NOT NULL REFERENCES authorities(name),
    request_sha256 TEXT NOT NULL,
    profile TEXT NOT NULL,
    subject TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    der BLOB NOT NULL,
    revoked_at TEXT,
    revocation_reason TEXT,
    invalidity_date TEXT,
    superseded_by TEXT,
    crl_entry BLOB  -- its CRL entry's DER, encoded once at revocation
);
-- A CRL is read straight from this covering index; the second finds what to encode.
CREATE INDEX certificates_crl ON certificates (issuer, crl_entry) WHERE revoked_at IS NOT NULL;
CREATE INDEX certificates_unencoded ON certificates (issuer)
    WHERE revoked_at IS NOT NULL AND crl_entry IS NULL;
CREATE INDEX certificates_subject ON certificates (subject);
CREATE INDEX certificates_not_before ON certificates (not_before);
CREATE INDEX certificates_revoked_at ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;
-- What ends soon (`list --expiring`, the stick report) without reading the register.
CREATE INDEX certificates_valid_not_after ON certificates (not_after) WHERE revoked_at IS NULL;
CREATE TABLE submissions (
    id INTEGER PRIMARY KEY,
    request_sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL,
    output_name TEXT NOT NULL,
    profile TEXT NOT NULL,
    received_at TEXT NOT NULL,
    status TEXT NOT NULL,
    findings TEXT NOT NULL DEFAULT '[]',
    file_sha256 TEXT,  -- the submitted file's bytes, to find the stick it came from
    signer TEXT,       -- the authorized signer's fingerprint, where one was required
    claim TEXT,        -- the work/CLAIM/ round it was decided in: recovery finishes, not redoes
    serial TEXT,       -- the certificate a revocation request named
    again INTEGER NOT NULL DEFAULT 0  -- 1: an earlier answer published again, not decided
);
CREATE INDEX submissions_claim ON submissions (claim) WHERE claim IS NOT NULL;
CREATE INDEX submissions_output ON submissions (output_name);
CREATE INDEX submissions_file ON submissions (file_sha256);
CREATE INDEX submissions_request ON submissions (request_sha256);
CREATE TABLE media_files (
    medium TEXT NOT NULL,       -- UUID, else label, else mount path
    file_sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    PRIMARY KEY (medium, file_sha256)
);
""" + SSH_CERTIFICATES + """CREATE TABLE crls (
    authority TEXT NOT NULL REFERENCES authorities(name),
    number INTEGER NOT NULL,
    this_update TEXT NOT NULL,
    next_update TEXT NOT NULL,
    entries INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (authority, number)
);
CREATE INDEX crls_this_update ON crls (this_update);
CREATE TABLE checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    body TEXT NOT NULL,       -- the canonical {seq, hash, time} that was signed
    signature TEXT NOT NULL   -- detached, ASCII-armored OpenPGP signature
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    data TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""
# From schema 1 (the first release): claim ids and the serial a revocation request named.
MIGRATIONS = {
    1: """
ALTER TABLE submissions ADD COLUMN claim TEXT;
ALTER TABLE submissions ADD COLUMN serial TEXT;
CREATE INDEX submissions_claim ON submissions (claim) WHERE claim IS NOT NULL;
CREATE INDEX certificates_revoked_at ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX crls_this_update ON crls (this_update);
UPDATE meta SET value = '2' WHERE key = 'schema_version';
""",
    # From schema 2: what ends soon, found by index (a register of a million certificates).
    2: """
CREATE INDEX certificates_valid_not_after ON certificates (not_after) WHERE revoked_at IS NULL;
UPDATE meta SET value = '3' WHERE key = 'schema_version';
""",
    # From schema 3: the clock floor is kept, not recomputed, so that entries written while
    # the clock was not trusted do not raise it (register.clock). It starts where the
    # recomputation stood.
    3: """
INSERT OR IGNORE INTO meta (key, value) SELECT 'clock_floor', t FROM (SELECT MAX(t) AS t FROM (
    SELECT MAX(not_before) AS t FROM certificates
    UNION ALL SELECT MAX(this_update) FROM crls
    UNION ALL SELECT MAX(revoked_at) FROM certificates WHERE revoked_at IS NOT NULL
    UNION ALL SELECT MAX(time) FROM audit)) WHERE t IS NOT NULL;
UPDATE meta SET value = '4' WHERE key = 'schema_version';
""",
    # From schema 4: a revocation request's earlier answer is found by what it says (its
    # canonical text), not by its bytes.
    4: """
CREATE INDEX IF NOT EXISTS submissions_request ON submissions (request_sha256);
UPDATE meta SET value = '5' WHERE key = 'schema_version';
""",
    # From schema 5: an earlier answer sent again says so (note.earlier_answer) because the
    # register says so, not because its times differ (they need not, within one second).
    5: """
ALTER TABLE submissions ADD COLUMN again INTEGER NOT NULL DEFAULT 0;
UPDATE meta SET value = '6' WHERE key = 'schema_version';
""",
    # From schema 6: OpenSSH certificates (issue 30).
    6: SSH_CERTIFICATES  # noqa: S608 - two constants
    + "UPDATE meta SET value = '7' WHERE key = 'schema_version';\n",
}
