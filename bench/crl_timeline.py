#!/usr/bin/env python3
"""A year of trips with the clock moved: does any served CRL lapse? (issue 29)

A CA is made (the shipped schedule: root 150 + 30 days, intermediate 20 + 10, a return
margin of 2 days). Then, trip after trip, the wall clock of every spoolca process is moved
(tests/tools/wallclock.c, preloaded) to a point of the return window the previous trip
announced (--at: 0 = its first day, 1 = its last), and the trip is what an operator does:
`clock confirm` (the appliance was off), `spoolca crl --due` (what the daemon does when
it starts), `media export` to a stick, `verify-publication` against the web root, and the
CRLs copied to the web root. Before each trip, the CRLs the web root serves are checked
against the moved clock: the table says how many days each had left. A revocation is made
on the way, so a CRL carries an entry.

Then the remedies, judged by OpenSSL: an emergency `crl --extend` and a pre-signed series
(`crl --presign 3`), each `openssl crl -verify`-ed against its CA; and the counter-case,
a trip skipped: the clock past the window, the web root's CRL lapsed, and the stale
export refused by verify-publication.

    python bench/crl_timeline.py [--days 365] [--at 0.5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from tests.clock import FakeClock  # noqa: E402

SPOOLCA = [sys.executable, "-m", "spoolca.cli"]


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Appliance:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.clock = FakeClock(folder)
        self.config = folder / "ca" / "spoolca.toml"
        self.www = folder / "www"
        self.www.mkdir()

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        import os
        env = {**os.environ, **self.clock.env}
        result = subprocess.run([*SPOOLCA, "--config", str(self.config), *args], env=env,
                                capture_output=True, text=True, cwd=ROOT)
        if check and result.returncode != 0:
            raise SystemExit(f"spoolca {' '.join(args)} failed: {result.stderr}")
        return result

    @property
    def outgoing(self) -> Path:
        return self.folder / "ca" / "spool" / "outgoing"

    def window(self) -> dict:
        return json.loads((self.outgoing / "crl" / "next-update.json").read_text())

    def served_days_left(self) -> dict[str, float]:
        now = self.clock.now()
        return {path.stem: round((x509.load_der_x509_crl(path.read_bytes()).next_update_utc
                                  - now).total_seconds() / 86400, 1)
                for path in sorted(self.www.glob("*.crl"))}

    def trip(self, stick: Path) -> tuple[int, str]:
        self.run("clock", "confirm", "--time", stamp(self.clock.now()))
        self.run("crl", "--due")
        shutil.rmtree(stick, ignore_errors=True)
        stick.mkdir()
        self.run("media", "export", str(stick))
        results = stick / "spoolca-results"
        fingerprint = json.loads((results / "MANIFEST.json").read_text())["appliance_key"]
        checked = self.run("verify-publication", str(results), "--served", str(self.www),
                           "--fingerprint", fingerprint, check=False)
        if checked.returncode == 0:
            for crl in (results / "crl").glob("*.crl"):
                shutil.copy(crl, self.www / crl.name)
        return checked.returncode, checked.stdout


def a_csr(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                         x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "New York"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "The Sample Company"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def openssl_verifies(crl: Path, ca: Path) -> bool:
    result = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(crl), "-CAfile",
                             str(ca), "-noout"], capture_output=True, text=True)
    return "verify OK" in result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--at", type=float, default=0.5,
                        help="where in each return window the trip comes (0..1)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="spoolca-crl-timeline-"))
    try:
        subprocess.run([*SPOOLCA, "init", "--dir", str(folder / "ca"), "--no-passphrase",
                        "--root-subject", "/C=US/ST=New York/O=The Sample Company/CN=Root",
                        "--intermediate-subject",
                        "/C=US/ST=New York/O=The Sample Company/CN=Intermediate"],
                       check=True, capture_output=True, cwd=ROOT)
        appliance = Appliance(folder)
        start = appliance.clock.now()
        incoming = folder / "ca" / "spool" / "incoming" / "server"
        incoming.mkdir(parents=True, exist_ok=True)
        (incoming / "victim.csr").write_bytes(a_csr("victim.sample.com"))
        appliance.run("process")
        serial = json.loads((appliance.outgoing / "victim" / "result.json").read_text())[
            "serial"]
        stick = folder / "stick"
        appliance.trip(stick)
        print(f"{'trip':>4}  {'date':<10}  {'window from':<10} {'until':<10} {'lapses':<10}"
              f"  first  {'served CRLs: days left at arrival':<34} verify  made")
        lapsed, trips = 0, 0
        while appliance.clock.now() - start < dt.timedelta(days=args.days):
            window = appliance.window()["return_window"]
            opens = dt.datetime.fromisoformat(window["from"])
            closes = dt.datetime.fromisoformat(window["until"])
            moment = opens + (closes - opens) * args.at
            appliance.clock.set(moment - dt.datetime.now(dt.UTC))
            left = appliance.served_days_left()
            lapsed += sum(1 for days in left.values() if days <= 0)
            trips += 1
            before = {name: data["number"] for name, data in appliance.window().items()
                      if isinstance(data, dict) and "number" in data}
            if trips == 3:  # its CRL is remade at once: "made" shows it
                appliance.run("clock", "confirm", "--time", stamp(appliance.clock.now()))
                appliance.run("revoke", serial, "--reason", "keyCompromise")
            status, _output = appliance.trip(stick)
            after = {name: data["number"] for name, data in appliance.window().items()
                     if isinstance(data, dict) and "number" in data}
            made = ", ".join(f"{n} #{after[n]}" for n in sorted(after)
                             if after[n] != before.get(n))
            served = ", ".join(f"{name} {days}" for name, days in left.items())
            print(f"{trips:>4}  {moment:%Y-%m-%d}  {window['from'][:10]} "
                  f"{window['until'][:10]} {window['lapses_at'][:10]}  "
                  f"{window['authority'][:5]:<5}  {served:<34} "
                  f"{'ok' if status == 0 else 'REFUSED':<7} {made or '-'}")
        print(f"\n{trips} trips over {(appliance.clock.now() - start).days} days: "
              f"{lapsed} served CRL(s) found lapsed on arrival")
        intermediate_ca = appliance.outgoing / "ca" / "intermediate.pem"
        until = stamp(appliance.clock.now() + dt.timedelta(days=60))
        appliance.run("crl", "--extend", "--until", until, "--ca", "intermediate")
        extended = x509.load_der_x509_crl((appliance.outgoing / "crl" /
                                           "intermediate.crl").read_bytes())
        ok = openssl_verifies(appliance.outgoing / "crl" / "intermediate.crl", intermediate_ca)
        print(f"extend: intermediate CRL #"
              f"{extended.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number}"
              f" until {stamp(extended.next_update_utc)}, {len(extended)} entry, "
              f"openssl verify: {ok}")
        appliance.run("crl", "--presign", "3", "--ca", "intermediate")
        for path in sorted((appliance.outgoing / "crl-presigned").glob("*.crl")):
            crl = x509.load_der_x509_crl(path.read_bytes())
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            print(f"presigned: #{number} from {stamp(crl.last_update_utc)} until "
                  f"{stamp(crl.next_update_utc)}, openssl verify: "
                  f"{openssl_verifies(path, intermediate_ca)}")
        status, output = appliance.trip(stick)
        print(f"verify-publication of the export with the series: exit {status}, "
              f"{output.count('pre-signed')} pre-signed CRLs accepted")
        stale = folder / "stale"
        shutil.copytree(stick, stale)
        skipped = dt.datetime.fromisoformat(appliance.window()["return_window"]["lapses_at"])
        appliance.clock.set(skipped + dt.timedelta(days=1) - dt.datetime.now(dt.UTC))
        left = appliance.served_days_left()
        results = stale / "spoolca-results"
        fingerprint = json.loads((results / "MANIFEST.json").read_text())["appliance_key"]
        refused = appliance.run("verify-publication", str(results), "--served",
                                str(appliance.www), "--fingerprint", fingerprint, check=False)
        print(f"counter-case, a trip skipped: served CRLs days left {left}; the stale export: "
              f"exit {refused.returncode}, "
              f"{sum('lapsed' in line for line in refused.stdout.splitlines())} refused as "
              "lapsed")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
