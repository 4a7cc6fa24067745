"""`spoolca import-openssl DIR` and `import-easyrsa PKI`: an existing CA brought in."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from spoolca.commands.common import now
from spoolca.errors import UsageError

__all__ = ["cmd_import_easyrsa", "cmd_import_openssl"]


def cmd_import_openssl(args: argparse.Namespace) -> int:
    return _import(args, "openssl")


def cmd_import_easyrsa(args: argparse.Namespace) -> int:
    return _import(args, "easyrsa")


def _import(args: argparse.Namespace, kind: str) -> int:
    from spoolca.authority.importing.bringin import import_ca
    from spoolca.commands.init import init_passphrase
    from spoolca.host.memory import no_core_dumps
    from spoolca.notation.dn import parse_subject

    no_core_dumps()  # before any passphrase is read
    resolutions = dict(_resolution(text) for text in args.resolve or [])
    passphrase = init_passphrase(args)
    source_passphrase = _source_passphrase(args.source_passphrase_file)
    try:
        subject = parse_subject(args.intermediate_subject) if args.intermediate_subject \
            else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    passphrase_file = str(Path(args.passphrase_file).resolve()) if args.passphrase_file else None
    directory = Path(args.dir)
    report = import_ca(Path(args.source), kind, directory, passphrase=passphrase,
                       passphrase_file=passphrase_file, source_passphrase=source_passphrase,
                       resolutions=resolutions, now=now(), intermediate_subject=subject,
                       pkcs11_module=Path(os.path.abspath(args.pkcs11_module))
                       if args.pkcs11_module else None)
    what = "OpenSSL CA" if kind == "openssl" else "easy-rsa PKI"
    print(f"Imported the {what} in {args.source} into {directory}/")
    print(f"  certificates  {report.certificates} ({report.revoked} revoked), "
          f"{report.skipped} skipped as resolved")
    print(f"  requests      {report.requests} matched to their certificates (renewable); "
          f"{report.unmatched_requests} without a certificate, not imported")
    for name, number in sorted(report.next_crl.items()):
        print(f"  {name} CRL     numbered from {number}, above the old CA's last")
    if report.new_intermediate:
        print(f"  intermediate  new, under the imported root: "
              f"{report.ceremony.intermediate.subject.rfc4514_string()}")
    print(f"  audit key     {report.ceremony.audit_fingerprint}: give auditors this "
          "fingerprint; the import is the audit entry ca.imported")
    print(f"Check: spoolca --config {report.ceremony.config} export-index --authority root")
    return 0


def _resolution(text: str) -> tuple[str, str]:
    code, _, action = text.partition("=")
    if not code or not action:
        raise UsageError(f"--resolve {text!r}: write CODE=ACTION, e.g. missing-certificate=skip")
    return code, action


def _source_passphrase(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"failed to read {path}: {exc.strerror}") from None
    return data[:-1] if data.endswith(b"\n") else data
