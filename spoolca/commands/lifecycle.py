"""`spoolca ca renew root|intermediate`: a CA's certificate renewed for its same key."""

from __future__ import annotations

import argparse

from spoolca.commands.common import now, opened

__all__ = ["cmd_ca_rekey", "cmd_ca_renew"]

_DEFAULT_DAYS = {"root": 7305, "intermediate": 3653}


def cmd_ca_renew(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding

    from spoolca.authority.lifecycle import renew_certificate, summary
    from spoolca.process.instance import hold_instance_lock
    from spoolca.process.session import CASession
    from spoolca.register.generations import current_name, older_names
    from spoolca.spool.results import publish_ca_files
    from spoolca.x509.lint import CertificateLinter

    name, moment = args.authority, now()
    days = args.days or _DEFAULT_DAYS[name]
    with opened(args) as (config, store):
        hold_instance_lock(config)  # never under a running daemon's feet: it caches the CAs
        with CASession(config, store, actor="cli") as session:
            cleared = session.preflight("CA certificate", ["root"])
            moment = cleared.now
            current = session.ca_certificates[name]
            child = session.ca_certificates["intermediate"] if name == "root" else None
            renewed = renew_certificate(
                name, current, cleared.authorities["root"], child, days, moment,
                CertificateLinter() if config.lint == "pkix" else None,
                config.authorities[name].max_days)
            with store.transaction("cli", moment, signing="CA certificate") as tx:
                tx.replace_authority(current_name(store, name),  # after a rekey: gN
                                     renewed.public_bytes(Encoding.DER))
                tx.record("ca.renewed", {"authority": name, "old": summary(current),
                                         "new": summary(renewed), "same_key": True})
            certificates = dict(session.ca_certificates, **{name: renewed})
            publish_ca_files(config.spool_dir / "outgoing" / "ca", certificates["root"],
                             certificates["intermediate"],
                             {n: session.generations[n]
                              for n in older_names(store, "intermediate")})
    print(f"renewed the {name} CA's certificate for its same key: valid until "
          f"{renewed.not_valid_after_utc:%Y-%m-%d %H:%M}Z (was "
          f"{current.not_valid_after_utc:%Y-%m-%d}); every certificate it issued still "
          f"verifies. New CA files in {config.spool_dir / 'outgoing' / 'ca'}/; the next "
          "stick export carries them")
    return 0


def cmd_ca_rekey(args: argparse.Namespace) -> int:
    from spoolca.authority.lifecycle import rekey_intermediate
    from spoolca.process.instance import hold_instance_lock
    from spoolca.process.session import CASession
    from spoolca.register.generations import older_names
    from spoolca.spool.results import publish_ca_files
    from spoolca.x509.lint import CertificateLinter

    moment = now()
    with opened(args) as (config, store):
        hold_instance_lock(config)  # never under a running daemon's feet: it caches the CAs
        with CASession(config, store, actor="cli") as session:
            cleared = session.preflight("CA certificate", ["root"])
            moment, root = cleared.now, cleared.authorities["root"]
            name, made = rekey_intermediate(
                config, store, session.generations, root,
                args.days or _DEFAULT_DAYS["intermediate"], moment,
                CertificateLinter() if config.lint == "pkix" else None, "cli",
                session.tokens)
        with CASession(config, store, actor="cli") as fresh:  # the new generation
            publish_ca_files(config.spool_dir / "outgoing" / "ca",
                             fresh.ca_certificates["root"], made,
                             {n: fresh.generations[n] for n in older_names(store,
                                                                           "intermediate")})
            fresh.refresh_crls([name])
    print(f"re-keyed the intermediate CA: generation {name}, a new key in "
          f"{config.keys_dir / (name + '.key.pem')}, valid until "
          f"{made.not_valid_after_utc:%Y-%m-%d}; it issues from now on. The earlier "
          "generation keeps publishing its CRL until its last certificate ends; its chain "
          f"is in {config.spool_dir / 'outgoing' / 'ca'}/ca-chain-gN.pem. Start the daemon "
          "again")
    return 0
