"""`spoolca ssh init|revoke|list`: parse, call, render."""

from __future__ import annotations

import argparse
import json

from spoolca.commands.common import now, opened

__all__ = ["cmd_ssh_init", "cmd_ssh_list", "cmd_ssh_revoke"]


def cmd_ssh_init(args: argparse.Namespace) -> int:
    from spoolca.authority.sshca import create_ssh_cas
    from spoolca.process.session import CASession

    with opened(args) as (config, store), CASession(config, store, actor="cli") as session:
        moment = session.now("SSH CA")  # the clock guard, as for every signing key
        lines = create_ssh_cas(config, store, session.outgoing, moment, args.key_type,
                               session.tokens)
        session.spool.create(config.ssh_profiles)
        session.seal()
    folder = config.spool_dir / "outgoing" / "ssh"
    print(f"made the SSH user CA {lines['user']}")
    print(f"made the SSH host CA {lines['host']}")
    print(f"published {folder}/: user-ca.pub (sshd: TrustedUserCAKeys), known_hosts "
          "(@cert-authority line for clients), revoked-keys.krl (sshd: RevokedKeys)")
    return 0


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
    moment = now().strftime("%Y-%m-%dT%H:%M:%SZ")
    with opened(args) as (_config, store):
        found = store.ssh_certificates(args.ca)
    for cert in found:
        cert["principals"] = json.loads(cert["principals"])
        cert["status"] = "revoked" if cert["revoked_at"] else \
            "expired" if cert["valid_before"] < moment else "valid"
        del cert["certificate"]
    if args.json:
        print(json.dumps(found, indent=2, sort_keys=True))
        return 0
    for cert in found:
        print(f"{cert['serial']:>20}  {cert['status']:<8} until {cert['valid_before']}  "
              f"{cert['key_id']}  {','.join(cert['principals'])}")
    return 0
