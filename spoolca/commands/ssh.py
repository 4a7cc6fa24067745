"""`spoolca ssh init|revoke|list`: parse, call, render."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from spoolca.commands.common import now, opened
from spoolca.config import Config
from spoolca.register.store import Store

if TYPE_CHECKING:
    from spoolca.process.session import CASession

__all__ = ["cmd_ssh_init", "cmd_ssh_list", "cmd_ssh_revoke"]


def cmd_ssh_init(args: argparse.Namespace) -> int:
    from spoolca.authority.sshca import create_ssh_cas
    from spoolca.process.session import CASession

    with opened(args) as (config, store), CASession(config, store, actor="cli") as session:
        moment = session.now("SSH CA")  # the clock guard, as for every signing key
        lines = create_ssh_cas(config, store, session.outgoing, moment, args.key_type,
                               session.tokens)
        session.spool.create(config.ssh_profiles)
        record = _ceremony_record(config, store, session, moment, args.key_type, lines)
        session.seal()
    folder = config.spool_dir / "outgoing" / "ssh"
    print(f"made the SSH user CA {lines['user']}")
    print(f"made the SSH host CA {lines['host']}")
    print(f"published {folder}/: user-ca.pub (sshd: TrustedUserCAKeys), known_hosts "
          "(@cert-authority line for clients), revoked-keys.krl (sshd: RevokedKeys)")
    print(f"ceremony record: {record} (and .asc; in outgoing/ceremony/ for the next stick)")
    return 0


def _fingerprint(line: str) -> str:
    """A public key line's fingerprint as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(base64.b64decode(line.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _ceremony_record(config: Config, store: Store, session: CASession,
                     moment: dt.datetime, key_type: str, lines: dict[str, str]) -> Path:
    """The SSH CAs' making, on paper: their fingerprints as ssh-keygen -l prints them."""
    from spoolca.authority.founding.record import write_record

    assert config.ssh is not None
    keys = [f"  SSH {ca} CA: {line.split()[0]} {_fingerprint(line)}"
            for ca, line in lines.items()]
    folder = session.outgoing.ssh
    return write_record(config, store, session.audit_key(), "ssh-init", moment,
                        [("key type", key_type), ("key store", config.ssh.key_store)], keys,
                        [folder / "user-ca.pub", folder / "host-ca.pub",
                         folder / "known_hosts"])


def cmd_ssh_revoke(args: argparse.Namespace) -> int:
    from spoolca.authority.sshca import revoke_ssh
    from spoolca.errors import UsageError
    from spoolca.process.session import CASession

    if args.ca not in ("user", "host") or not args.which:
        raise UsageError("an SSH certificate is ssh:user:SERIAL or ssh:host:SERIAL (or a key "
                         "ID in place of the serial)")
    with opened(args) as (config, store), CASession(config, store, actor="cli") as session:
        moment = session.now("SSH revocation")
        serials = revoke_ssh(store, session.outgoing, moment, args.ca, args.which, "cli")
        session.seal()
    print(f"revoked SSH {args.ca} certificate(s) {', '.join(map(str, serials))}; the KRL "
          f"is {config.spool_dir / 'outgoing' / 'ssh' / 'revoked-keys.krl'}")
    return 0


def cmd_ssh_list(args: argparse.Namespace) -> int:
    from spoolca.register.views import ssh_state

    moment = now().strftime("%Y-%m-%dT%H:%M:%SZ")
    with opened(args) as (_config, store):
        found = store.ssh_certificates(args.ca)
    for cert in found:
        cert["principals"] = json.loads(cert["principals"])
        cert["status"] = ssh_state(cert, moment)
        del cert["certificate"]
    if args.json:
        print(json.dumps(found, indent=2, sort_keys=True))
        return 0
    for cert in found:
        print(f"{cert['serial']:>20}  {cert['status']:<8} until {cert['valid_before']}  "
              f"{cert['key_id']}  {','.join(cert['principals'])}")
    return 0
