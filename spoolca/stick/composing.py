"""What goes out on a stick, composed and signed by whoever holds the appliance key.

Under spoolca-results/ on the stick: the results of the requests that stick brought, the
CA certificates, the CRLs, the audit log, the report and a README.txt; each result
folder carries its SHA256SUMS (a requester handed only that folder checks it with
`sha256sum -c`), and the export as a whole one SHA256SUMS, signed by the appliance's
OpenPGP key, that covers every file including those folders' SHA256SUMS: one signature
per trip, not one per result (a gpg process each: 10 s per 1,000 results). MANIFEST.json
names the audit head it was made with. The checksums are of the bytes written, not read
back.

The daemon composes it for the media unit (stick.exportrequests: the unit that reads
hostile sticks never holds a key), and `spoolca media export` run by hand composes it
itself; both with `compose`, into a folder by descriptor (fsutil.Folder).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from spoolca.config import Config
from spoolca.host.fsutil import Folder
from spoolca.host.progress import Progress
from spoolca.keys.openpgp import ApplianceKey
from spoolca.register.store import Store
from spoolca.spool.outgoing import PRESIGNED
from spoolca.stick.medium import Medium
from spoolca.stick.publication import MANIFEST, manifest_of
from spoolca.stick.report.facts import Trip, gather
from spoolca.stick.report.html import render

__all__ = ["SUMS", "Tree", "compose", "results_of"]

SUMS = ("SHA256SUMS", "SHA256SUMS.asc")


class Tree:
    """Files written under one folder of the stick, by relative name; their SHA-256 is
    kept as written, for the SHA256SUMS that cover them."""

    def __init__(self, top: Folder) -> None:
        self._folders = {"": top}
        self.digests: dict[str, str] = {}
        self._in_folder: dict[str, list[str]] = {}  # the files written directly in each

    def _folder(self, relative: str) -> Folder:
        if relative not in self._folders:
            parent, _, name = relative.rpartition("/")
            self._folders[relative] = self._folder(parent).make_folder(name)
        return self._folders[relative]

    def write(self, relative: str, data: bytes) -> None:
        parent, _, name = relative.rpartition("/")
        self._folder(parent).write(name, data)
        if relative not in self.digests:
            self._in_folder.setdefault(parent, []).append(relative)
        self.digests[relative] = hashlib.sha256(data).hexdigest()

    def copy(self, source: Path, relative: str) -> dict[str, bytes]:
        """Our own folder's files (outgoing/NAME, ca/, crl/, ...) into RELATIVE; what was
        written, by name."""
        self._folder(relative)
        written = {}
        for path in sorted(source.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                written[path.name] = path.read_bytes()
                self.write(f"{relative}/{path.name}", written[path.name])
        return written

    def write_sums(self, under: str) -> bytes:
        """SHA256SUMS of every file written below UNDER (sha256sum -c format); its bytes.
        A result folder's are its own files only, looked up, not found by scanning every
        file written so far (quadratic: 10,000 results are 60,000 files)."""
        prefix = f"{under}/" if under else ""
        names = sorted(self.digests) if not under else sorted(self._in_folder.get(under, []))
        lines = [f"{self.digests[name]}  {name[len(prefix):]}\n" for name in names
                 if name[len(prefix):] not in SUMS]
        body = "".join(lines).encode()
        self.write(f"{prefix}SHA256SUMS", body)
        return body

    def sign_sums(self, key: ApplianceKey) -> None:
        """The export's SHA256SUMS, over every file written (the folders' own SHA256SUMS
        among them), and its detached signature: the one signature of the trip."""
        self.write("SHA256SUMS.asc", key.sign(self.write_sums("")).encode())

    def close(self) -> None:
        for relative, folder in self._folders.items():
            if relative:
                folder.close()




def compose(config: Config, store: Store, key: ApplianceKey, medium: Medium | None,
            seen: Medium, now: dt.datetime, folder: Folder, *, progress: bool = False,
            heartbeat: Callable[[], None] = lambda: None) -> tuple[list[str], int]:
    """The whole export for MEDIUM (None: a stick that brought nothing, the CA's public
    files only) into FOLDER: (the results it carries, the audit head it carries). SEEN:
    the stick as it was found, for the report."""
    outgoing = config.spool_dir / "outgoing"
    names = [n for n in results_of(store, medium) if (outgoing / n).is_dir()]
    tree = Tree(folder)
    try:
        with Progress(len(names), "export", shown=progress) as bar:
            head_seq = _write(config, store, key, tree, names, now, medium or seen, bar,
                              heartbeat)
    finally:
        tree.close()
    return names, head_seq


def _write(config: Config, store: Store, key: ApplianceKey, tree: Tree, names: list[str],
           now: dt.datetime, medium: Medium, bar: Progress,
           heartbeat: Callable[[], None]) -> int:
    outgoing = config.spool_dir / "outgoing"
    for name in names:
        tree.copy(outgoing / name, f"results/{name}")
        tree.write_sums(f"results/{name}")
        bar.advance()
        heartbeat()  # a factory's stick: thousands of folders, the watchdog hears of it
    written = {folder: tree.copy(outgoing / folder, folder)
               for folder in ("ca", "crl", PRESIGNED, "ssh", "audit", "ceremony")
               if (outgoing / folder).is_dir()  # ceremony/: from the first record on
               and (folder != PRESIGNED or any((outgoing / folder).glob("*.crl")))}
    if "crl" in written:  # for the online side: spoolca verify-publication
        manifest = manifest_of(config, written["crl"], written.get("ca", {}), now,
                               written.get(PRESIGNED, {}))
        tree.write(f"crl/{MANIFEST}", manifest)
        tree.write(f"crl/{MANIFEST}.asc", key.sign(manifest).encode())
    head_seq, head_hash = store.audit_head()
    schedule = outgoing / "crl" / "next-update.json"
    due = json.loads(schedule.read_text()) if schedule.exists() else {}
    tree.write("MANIFEST.json", (json.dumps({
        "made_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "results": names,
        "audit_head": {"seq": head_seq, "hash": head_hash},
        "appliance_key": key.fingerprint, "crl": due}, indent=2, sort_keys=True) + "\n").encode())
    tree.write("README.txt", _readme(names, due, key.fingerprint, sorted(config.profiles),
                                     config.default_profile, PRESIGNED in written,
                                     "ssh" in written).encode())
    trip = Trip({"key": medium.key, "uuid": medium.uuid, "label": medium.label,
                 "path": medium.path}, names)
    facts = gather(config, store, now, trip, key.fingerprint)
    tree.write("report.json", (json.dumps(facts, indent=2, sort_keys=True) + "\n").encode())
    tree.write("REPORT.html", render(facts).encode())
    tree.sign_sums(key)
    return head_seq


def _readme(names: list[str], due: dict[str, object], fingerprint: str,
            profiles: list[str], default: str, presigned: bool, has_ssh: bool) -> str:
    """README.txt for whoever opens the stick: what each file is, how to check it, when
    to come back. Every file it names is on the stick."""
    ssh = ("ssh/             the SSH CAs: user-ca.pub (sshd TrustedUserCAKeys), known_hosts\n"
           "                 (the @cert-authority line for clients), revoked-keys.krl\n"
           "                 (sshd RevokedKeys)\n") if has_ssh else ""
    series = ("crl-presigned/   future CRLs (`spoolca crl --presign`), each to be served from\n"
              "                 the date in its name; README.txt there: none carries a\n"
              "                 revocation made after it was signed\n") if presigned else ""
    span = due.get("return_window")
    window = f"between {span['from']} and {span['until']}" if isinstance(span, dict) \
        else f"before {due.get('return_by', 'unknown')}"
    return f"""spoolca results
===============

Open REPORT.html first: what became of each request on this stick, and when to come back.

results/NAME/    one folder per request this stick brought: cert.pem, chain.pem,
                 fullchain.pem, cert.crt and result.json (status, and every reason if
                 rejected), and SHA256SUMS (listed in the signed SHA256SUMS below);
                 report.json names the file each one came from
ca/              the root and intermediate certificates and ca-chain.pem
crl/             the current CRLs (NAME.crl DER, NAME.crl.pem), crl-bundle.pem (all of
                 them, for nginx ssl_crl and OpenVPN crl-verify), next-update.json, and
                 publication.json(.asc): what the web server is to publish, signed (check
                 it there: spoolca verify-publication DIR --served WEBROOT
                 --fingerprint {fingerprint})
{series}{ssh}audit/           the audit log, signed (check it: spoolca audit verify --dir audit
                 --fingerprint {fingerprint}; by hand: report.json, "audit")
MANIFEST.json    what this export holds and the audit head it was made with
REPORT.html      this trip's outcomes, the return window, what expires (report.json: the
                 same facts for machines)
SHA256SUMS(.asc) checksums of everything here, signed by the appliance's OpenPGP key
                 {fingerprint}

Check:  gpg --verify SHA256SUMS.asc SHA256SUMS && sha256sum -c SHA256SUMS
A result folder handed on alone: sha256sum -c SHA256SUMS in it, and its SHA256SUMS
is listed in the signed one here (grep ' results/NAME/SHA256SUMS$' SHA256SUMS).
(gpg warns "This key is not certified with a trusted signature" until you certify the
appliance key yourself: what matters is that the fingerprint it prints is the one above,
as written in your ceremony record.)

Requests answered: {len(names)}.
Bring this stick back {window}: the next CRL is made from the first date;
after the second there is too little time left to publish it before the current
CRLs end ({span.get("lapses_at", "?") if isinstance(span, dict) else "?"}).

Sending requests on this stick
------------------------------
Put each CSR (*.csr, *.pem, *.req or *.der) at the top of the stick, outside this
folder, in the folder of its profile: {", ".join(p + "/" for p in profiles)} (at the
top: {default}). A revocation request goes in revoke/ as NAME.json with its signer's
NAME.json.asc. Never put a private key on the stick: it is not taken, and it must be
treated as exposed. Each answer comes back in results/NAME/ with every reason if it is
refused; REPORT.html lists them by your file names.
"""


def results_of(store: Store, medium: Medium | None) -> list[str]:
    """The outgoing/ names of MEDIUM's results: its secret's, and, when this export gives
    it its secret, what its UUID or trip brought before (moved to the secret when this
    export commits). A stick that already had a secret claims nothing by its UUID."""
    if medium is None:
        return []
    earlier = store.outputs_from_medium(medium.weak_key) \
        if medium.secret_new or not medium.secret else []
    return sorted({*store.outputs_from_medium(medium.key), *earlier})
