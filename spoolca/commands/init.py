"""`spoolca init`: a new CA from the command line or a ceremony file, and its record.

The keys go into files (encrypted with the passphrase) or into a PKCS#11 token
(`--key-store pkcs11`, the passphrase then being the token's PIN); mixed is allowed
(`--intermediate-key-store file`: the root in the token, the intermediate in a file).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from spoolca.commands.common import now
from spoolca.errors import UsageError
from spoolca.register.store import Store

if TYPE_CHECKING:
    from spoolca.authority.founding.ceremony import CeremonyReport
    from spoolca.authority.founding.newkeys import KeyPlan

__all__ = ["cmd_init"]

MIN_PASSPHRASE = 8


def init_passphrase(args: argparse.Namespace) -> bytes | None:
    if args.passphrase_file and args.no_passphrase:
        raise UsageError("--passphrase-file and --no-passphrase contradict each other; give one")
    if args.no_passphrase:
        return None
    if args.passphrase_file:
        try:
            data = Path(args.passphrase_file).read_bytes()
        except OSError as exc:
            raise UsageError(f"failed to read the passphrase file {args.passphrase_file}: "
                             f"{exc.strerror}") from None
        passphrase = data[:-1] if data.endswith(b"\n") else data
    elif sys.stdin.isatty():
        first = getpass.getpass("CA key passphrase: ")
        if first != getpass.getpass("Repeat the passphrase: "):
            raise UsageError("the two passphrases differ; nothing was created")
        passphrase = first.encode()
    else:
        raise UsageError("init needs --passphrase-file FILE (or --no-passphrase to store the "
                         "keys unencrypted) when not run on a terminal")
    if len(passphrase) < MIN_PASSPHRASE:
        raise UsageError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    return passphrase


def cmd_init(args: argparse.Namespace) -> int:
    from spoolca.authority.founding.ceremony import default_intermediate_subject, init_ca
    from spoolca.host.memory import no_core_dumps
    from spoolca.notation.dn import parse_subject

    no_core_dumps()  # before the passphrase is read
    if args.ceremony:
        from spoolca.commands.ceremony import apply_ceremony

        apply_ceremony(args)
    elif args.rehearse:
        raise UsageError("--rehearse rehearses a --ceremony FILE")
    if not args.dir:
        raise UsageError("init needs --dir DIR (or a --ceremony file that names it)")
    passphrase = init_passphrase(args)
    try:
        root_subject = parse_subject(args.root_subject)
        inter_subject = parse_subject(args.intermediate_subject) if args.intermediate_subject \
            else default_intermediate_subject(root_subject)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    directory = Path(args.dir)
    if args.shares:
        _check_shares(args, directory, passphrase)  # before anything is made
    passphrase_file = str(Path(args.passphrase_file).resolve()) if args.passphrase_file else None
    report = init_ca(directory, root_subject=root_subject, intermediate_subject=inter_subject,
                     plan=_key_plan(args), passphrase=passphrase,
                     passphrase_file=passphrase_file, root_days=args.root_days,
                     intermediate_days=args.intermediate_days, now=now(), urls=_urls(args))
    state = "encrypted with your passphrase" if report.encrypted \
        else "NOT encrypted (--no-passphrase)"
    print(f"Created a new CA in {directory}/")
    for label, cert in (("root", report.root), ("intermediate", report.intermediate)):
        print(f"  {label:<13} {cert.subject.rfc4514_string()}, valid until "
              f"{cert.not_valid_after_utc:%Y-%m-%d}")
    in_token = {name: where for name, where in report.key_stores.items()
                if where.startswith("pkcs11:")}
    in_files = [name for name in report.key_stores if name not in in_token]
    parts = [f"{name}: {where}" for name, where in in_token.items()]
    if in_files:
        parts.append(f"{' and '.join(in_files)} in {directory}/keys/ (mode 0400, {state})")
    print("  keys          " + "; ".join(parts))
    print(f"  config        {report.config}")
    print(f"  certificates  {directory}/spool/outgoing/ca/, CRLs in spool/outgoing/crl/")
    print(f"  audit key     {report.audit_fingerprint} (OpenPGP, in {directory}/gnupg/): give "
          "auditors this fingerprint")
    print(f"Put requests in {directory}/spool/incoming/[server|client|subca]/ and run "
          f"`spoolca --config {report.config} process`.")
    _ceremony_record(args, report, passphrase)
    return 0


def _ceremony_record(args: argparse.Namespace, report: CeremonyReport,
                     passphrase: bytes | None) -> None:
    """init's shares (if asked) and its ceremony record, signed by the new appliance key."""
    from spoolca.authority.founding.record import certificate_lines, write_record
    from spoolca.commands.shares import issue
    from spoolca.config import load_config
    from spoolca.keys.openpgp import ApplianceKey

    config = load_config(Path(report.config))
    store = Store.of(config)
    key = ApplianceKey(config.gnupg_dir, report.audit_fingerprint, passphrase)
    try:
        shares: list[Path] = []
        if args.shares and passphrase is not None:
            shares = issue(argparse.Namespace(shares=args.shares, custodian=args.custodian,
                                              out=args.shares_out), config, store, passphrase,
                           "shares.issued")
        parameters = [("root days", str(args.root_days)),
                      ("intermediate days", str(args.intermediate_days)),
                      ("key type", args.key_type),
                      *((f"{name} key", where) for name, where in report.key_stores.items()),
                      ("keys at rest", "encrypted" if report.encrypted else "NOT encrypted"),
                      ("shares", f"{args.shares[0]}-of-{args.shares[1]}: "
                       f"{', '.join(args.custodian)}" if shares else "none")]
        outgoing = config.spool_dir / "outgoing"
        outputs = [*sorted((outgoing / "ca").glob("*.pem")), *sorted((outgoing / "crl").glob(
            "*.crl")), *sorted(config.keys_dir.glob("*.pem")), config.path, *shares]
        if args.rehearse:
            parameters.insert(0, ("REHEARSAL", "throwaway keys in a temporary directory: "
                                  "never use this CA"))
        record = write_record(config, store, key, "init-rehearsal" if args.rehearse else "init",
                              now(), parameters,
                              [*certificate_lines("root CA", report.root),
                               *certificate_lines("intermediate CA", report.intermediate)],
                              outputs)
        print(f"  ceremony      {record} (signed; print it for the binder)")
        if args.rehearse:
            print(f"REHEARSAL: throwaway keys in {report.directory}; review the record, "
                  "then remove the folder and run the ceremony for real")
            if getattr(args, "rehearsal_token", None):
                print(f"REHEARSAL: the token is a throwaway SoftHSM2 token; to use it, set "
                      f"SOFTHSM2_CONF={args.rehearsal_token}")
    finally:
        key.close()
        store.close()


def _check_shares(args: argparse.Namespace, directory: Path, passphrase: bytes | None) -> None:
    """init --shares: refused before the CA is made, not halfway."""
    from spoolca.commands.shares import check_plan

    if passphrase is None:
        raise UsageError("--shares splits the passphrase: give --passphrase-file")
    check_plan(args.shares, args.custodian or [], args.shares_out, directory)


def _urls(args: argparse.Namespace) -> dict[str, str]:
    """The CAs' CRL and issuer URLs (http:// only: RFC 5280 4.2.1.13 and 4.2.2.1)."""
    urls = {key: value for key in ("root_crl", "root_issuer", "intermediate_crl",
                                   "intermediate_issuer")
            if (value := getattr(args, f"{key}_url", None))}
    for key, value in urls.items():
        if not value.startswith("http://"):
            raise UsageError(f"--{key.replace('_', '-')}-url {value!r}: must be an http:// URL "
                             "(relying parties fetch CRLs and CA certificates over plain HTTP)")
    return urls


def _key_plan(args: argparse.Namespace) -> KeyPlan:
    """Where each CA key goes: files, or the named token (and which CAs' keys)."""
    from spoolca.authority.founding.newkeys import KeyPlan

    stores = {"root": args.key_store,
              "intermediate": args.intermediate_key_store or args.key_store}
    in_token = frozenset(name for name, store in stores.items() if store == "pkcs11")
    if not in_token:
        return KeyPlan(args.key_type)
    if not args.pkcs11_module or not args.token:
        raise UsageError("a key in a token needs --pkcs11-module PATH and --token LABEL")
    return KeyPlan(args.key_type, (Path(os.path.abspath(args.pkcs11_module)), args.token), in_token,
                   args.key_label)


