"""`spoolca list|show|export-index`: reading the certificate register."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from spoolca.commands.common import now as utc_now
from spoolca.commands.common import opened, serial_arg
from spoolca.errors import UsageError
from spoolca.register.store import Store
from spoolca.register.views import is_ssh_name, parse_ssh_name, ssh_name, ssh_state


def cmd_list(args: argparse.Namespace) -> int:
    from spoolca.register.records import format_time
    from spoolca.register.views import crl_status, record_as_dict, select

    now = utc_now()
    with opened(args) as (config, store):
        if args.expiring is not None:  # by index: a million-certificate register stays quick
            horizon = now + dt.timedelta(days=args.expiring)
            ending, _count = store.ending_between(format_time(now), format_time(horizon))
            records = select(ending, now, status=args.status, expiring_days=args.expiring)
        else:
            records = select(list(store.certificate_summaries()), now, status=args.status)
        crls = crl_status(config, store, now)
        ssh = _ssh_listed(store, now, args.status, args.expiring) if config.ssh else []
    if args.json:
        print(json.dumps([record_as_dict(r, now) for r in records] + ssh, indent=2))
        return 0
    print(f"{'SERIAL':<34} {'STATUS':<8} {'NOT AFTER':<20} {'PROFILE':<8} SUBJECT")
    for r in records:
        renewed = f"  (superseded by {r.superseded_by})" if r.superseded_by else ""
        print(f"{r.serial:<34} {r.status(now):<8} {r.not_after:<20} {r.profile:<8} {r.subject}"
              f"{renewed}")
    for c in ssh:
        print(f"{c['serial']:<34} {c['status']:<8} {c['not_after']:<20} {c['profile']:<8} "
              f"{c['subject']} ({', '.join(c['principals'])})")
    for crl in crls:
        print(f"{crl.authority} CRL #{crl.number} valid until {crl.next_update}; the next one "
              f"is made from {crl.refresh_at}")
    return 0


def _ssh_listed(store: Store, now: dt.datetime, status: str | None,
                expiring: int | None) -> list[dict[str, Any]]:
    """SSH certificates as `list` gives X.509 ones: the same keys (serial ssh:CA:SERIAL,
    the key ID as the subject, the CA as the issuer), plus their principals."""
    from spoolca.register.records import format_time

    moment = format_time(now)
    horizon = format_time(now + dt.timedelta(days=expiring)) if expiring is not None else None
    listed = []
    for ca in ("user", "host"):
        for cert in store.ssh_certificates(ca):
            state = ssh_state(cert, moment)
            if (status and state != status) or (horizon and not (
                    state == "valid" and cert["valid_before"] <= horizon)):
                continue
            listed.append({
                "serial": ssh_name(ca, cert["serial"]), "status": state,
                "subject": cert["key_id"], "issuer": f"ssh-{ca}-ca",
                "profile": cert["profile"], "not_before": cert["valid_after"],
                "not_after": cert["valid_before"], "request_sha256": cert["request_sha256"],
                "revoked_at": cert["revoked_at"], "revocation_reason": None,
                "invalidity_date": None, "superseded_by": None,
                "principals": json.loads(cert["principals"])})
    return listed

def cmd_show(args: argparse.Namespace) -> int:
    from spoolca.errors import NotFoundError
    from spoolca.register.views import show_text

    if is_ssh_name(args.serial):  # ssh:CA:SERIAL, as result.json and the register say
        return _show_ssh(args)
    serial = serial_arg(args.serial, UsageError)
    with opened(args) as (_config, store):
        record = store.certificate(serial)
    if record is None:
        raise NotFoundError(f"no certificate with serial {serial} in the register")
    sys.stdout.write(show_text(record, utc_now()))
    return 0


def _show_ssh(args: argparse.Namespace) -> int:
    import json

    from spoolca.errors import NotFoundError

    try:
        ca, serial = parse_ssh_name(args.serial)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not serial.isdigit():
        raise UsageError(f"{args.serial!r}: show takes the serial (in decimal, as "
                         "ssh-keygen -L prints it)")
    with opened(args) as (_config, store):
        found = store.ssh_certificates(ca, serial=int(serial))
    if not found:
        raise NotFoundError(f"no SSH {ca} certificate with serial {serial} in the register")
    cert = found[0]
    status = ssh_state(cert, utc_now().strftime("%Y-%m-%dT%H:%M:%SZ"))
    status += f" {cert['revoked_at']}" if cert["revoked_at"] else ""
    sys.stdout.write(
        f"SSH {ca} certificate {serial}: {status}\n"
        f"  key ID      {cert['key_id']}\n"
        f"  principals  {', '.join(json.loads(cert['principals']))}\n"
        f"  valid       {cert['valid_after']} to {cert['valid_before']}\n"
        f"  profile     {cert['profile']}\n"
        f"  request     {cert['request_sha256']}\n"
        f"  certificate {cert['certificate']}\n")
    return 0


def cmd_export_index(args: argparse.Namespace) -> int:
    from spoolca.register.views import index_line

    now = utc_now()
    with opened(args) as (_config, store):
        out = sys.stdout
        for record in store.certificate_summaries():  # streamed: a million lines, no list
            if args.authority is None or record.issuer == args.authority:
                out.write(index_line(record, now, updatedb=not args.no_updatedb))
    return 0
