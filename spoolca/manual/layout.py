"""The package's layers, bottom to top: what tests/test_layout.py enforces and what the
generated package map (docs/design/packages.md) shows, from this one list.

A module may import its own layer or a lower one, never a higher one, so the layout reads
as the data flow: requests come in from a stick, are decided and signed, recorded,
published, and the service and the command line sit on top.
"""

from __future__ import annotations

__all__ = ["LAYERS"]

# (layer, the top-level names in it, what it is)
LAYERS: list[tuple[str, frozenset[str], str]] = [
    ("floor", frozenset({"errors", "findings", "log", "config", "host", "notation"}),
     "the core vocabulary (errors, findings, log), the configuration, the host (every "
     "write through fsutil, helper processes, memory, root's helper, bounded reads) and "
     "PKI notation (DNs, DER)"),
    ("keys", frozenset({"keys"}), "key custody: algorithms, encrypted files, tokens, "
     "shares, the appliance's OpenPGP key"),
    ("x509", frozenset({"x509", "ssh"}), "pure PKI: requests, policy, profiles, issuing, "
     "CRLs, lint, and OpenSSH certificates and KRLs; no I/O, time passed in"),
    ("register", frozenset({"register"}), "the SQLite store (the only SQL), the audit "
     "chain, checkpoints, export and verify, read views"),
    ("backup", frozenset({"backup"}), "archives of the state directory and their drill"),
    ("spool", frozenset({"spool"}), "the spool tree (claim, archive), the one writer of "
     "outgoing/, results, recovery"),
    ("stick", frozenset({"stick"}), "the stick: ingest, export, its identity, the report "
     "it carries"),
    ("authority", frozenset({"authority"}), "the CAs: founding, importing, unlocking, "
     "revocation, lifecycle, cross-signing, catch-up"),
    ("process", frozenset({"process"}), "the CA session (clock, keys, sealing, recovery: "
     "one pre-flight) and the batch pipeline"),
    ("service", frozenset({"service"}), "the daemon, sd_notify, its status line"),
    ("top", frozenset({"cli", "commands", "demo", "manual", "__init__"}),
     "the command line (parse, call, render), the demo, this manual"),
]
