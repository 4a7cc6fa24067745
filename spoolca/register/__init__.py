"""The register: the SQLite store (the only SQL), the audit hash chain, checkpoints, read views."""
