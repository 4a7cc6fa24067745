"""`spoolca ca ...`: the CAs themselves. renew (a CA's certificate for its same key),
rekey (a new intermediate generation), cross-sign and cross-request (cross-certification)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from spoolca.commands.common import now, opened
from spoolca.config import LintMode
from spoolca.errors import UsageError

if TYPE_CHECKING:
    from spoolca.process.session import CASession

__all__ = ["cmd_ca_cross_request", "cmd_ca_cross_sign", "cmd_ca_rekey", "cmd_ca_renew"]

_DEFAULT_DAYS = {"root": 7305, "intermediate": 3653}


def cmd_ca_renew(args: argparse.Namespace) -> int:
    from spoolca.authority.lifecycle import record_renewal, renew_certificate
    from spoolca.process.instance import hold_instance_lock
    from spoolca.process.session import CASession
    from spoolca.register.generations import older_names
    from spoolca.spool.results import ca_files
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
                CertificateLinter() if config.lint == LintMode.PKIX else None,
                config.authorities[name].max_days)
            record_renewal(store, name, current, renewed, moment)
            certificates = dict(session.ca_certificates, **{name: renewed})
            session.outgoing.ca_files(ca_files(
                certificates["root"], certificates["intermediate"],
                {n: session.generations[n] for n in older_names(store, "intermediate")}))
    print(f"renewed the {name} CA's certificate for its same key: valid until "
          f"{renewed.not_valid_after_utc:%Y-%m-%d %H:%M}Z (was "
          f"{current.not_valid_after_utc:%Y-%m-%d}); every certificate it issued still "
          f"verifies. New CA files in {session.outgoing.ca}/; the next "
          "stick export carries them")
    return 0


def cmd_ca_rekey(args: argparse.Namespace) -> int:
    from spoolca.authority.lifecycle import rekey_intermediate
    from spoolca.process.instance import hold_instance_lock
    from spoolca.process.session import CASession
    from spoolca.register.generations import older_names
    from spoolca.spool.results import ca_files
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
                CertificateLinter() if config.lint == LintMode.PKIX else None, "cli",
                session.tokens)
        with CASession(config, store, actor="cli") as fresh:  # the new generation
            fresh.outgoing.ca_files(ca_files(
                fresh.ca_certificates["root"], made,
                {n: fresh.generations[n] for n in older_names(store, "intermediate")}))
            fresh.refresh_crls([name])
    print(f"re-keyed the intermediate CA: generation {name}, a new key in "
          f"{config.keys_dir / (name + '.key.pem')}, valid until "
          f"{made.not_valid_after_utc:%Y-%m-%d}; it issues from now on. The earlier "
          "generation keeps publishing its CRL until its last certificate ends; its chain "
          f"is in {fresh.outgoing.ca}/ca-chain-gN.pem. Start the daemon "
          "again")
    return 0


_MAX_BYTES = 65536  # a certificate, not a stick's worth


def cmd_ca_cross_sign(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding

    from spoolca.authority.crosssign import cross_sign, record_cross_signed
    from spoolca.notation.dn import oneline
    from spoolca.process.session import CASession
    from spoolca.x509.issuer import serial_hex
    from spoolca.x509.lint import CertificateLinter

    target = _certificate(Path(args.certificate))
    with opened(args) as (config, store), CASession(config, store, actor="cli") as session:
        cleared = session.preflight("cross-certificate", ["root"])
        moment, root = cleared.now, cleared.authorities["root"]
        made = cross_sign(target, root, args.days, moment,
                          lambda s: store.certificate(serial_hex(s)) is not None,
                          CertificateLinter() if config.lint == LintMode.PKIX else None)
        serial = record_cross_signed(store, target, made, moment)
        path = _written(session, args.out, f"cross-{serial}.pem",
                        made.public_bytes(Encoding.PEM))
        session.seal()
    print(f"cross-signed {oneline(made.subject)} with the root's key: serial {serial}, valid "
          f"until {made.not_valid_after_utc:%Y-%m-%d}, in {path} (revocable with `spoolca "
          f"revoke {serial}`, on the root's CRL)")
    return 0


def cmd_ca_cross_request(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding

    from spoolca.authority.crosssign import cross_request, record_cross_request
    from spoolca.process.session import CASession

    with opened(args) as (config, store), CASession(config, store, actor="cli") as session:
        cleared = session.preflight("cross-signing request", ["root"])
        moment, root = cleared.now, cleared.authorities["root"]
        request = cross_request(root)
        pem = request.public_bytes(Encoding.PEM)
        path = _written(session, args.out, "root-cross-request.csr", pem)
        record_cross_request(store, request, moment)
        session.seal()
    print(f"a request for another root to cross-sign ours (our root's subject and key, "
          f"signed by it): {path}")
    return 0


def _certificate(path: Path) -> x509.Certificate:

    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"failed to read {path}: {exc.strerror}") from None
    if len(data) > _MAX_BYTES:
        raise UsageError(f"{path} is larger than a certificate ({_MAX_BYTES} bytes)")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise UsageError(f"{path} is not a PEM or DER certificate") from None


def _written(session: CASession, out: str | None, name: str, data: bytes) -> Path:
    """DATA in OUT if given, else beside the CA files in outgoing/ca/ (the next stick
    export carries it out with them)."""
    if out is None:
        return session.outgoing.ca_file(name, data)
    return _write_out(Path(out), data)


def _write_out(path: Path, data: bytes) -> Path:
    from spoolca.host.fsutil import atomic_write

    atomic_write(path, data)
    return path
