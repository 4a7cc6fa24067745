"""The stateful model of a CA (invariant 17: features compose): random sequences of real
operations on a real CA, and after every step the promises checked against a model.

Used by tests/test_model.py (bounded, in the suite) and bench/model_campaign.py (long).
Operations are the real ones: the batch pipeline and the CA session in-process with a
wrong clock injected where a rule sets one; backup, restore, catch-up, clock confirm,
media export and audit verify as the command line; `process` and `serve` as real
subprocesses killed with SIGKILL at a random instant. Nothing is mocked.

The invariants, after every step:
- one answer per request: a result folder holds the answer to its own request only,
  and after a pass that ran, every request submitted before it is answered;
- no certificate twice for one request (a restore without catch-up forgets, by design);
- every revocation the register holds is on its CA's CRL made after it;
- a CRL number is never published with two contents, and never goes down (across a
  restore without catch-up, where no wrong clock the guard accepts may have set the floor:
  the restore's CRLs number from the first CRL's time);
- the exported log recomputes, and extends what was exported before (a restore without
  catch-up starts a new one, by design);
- nothing published that the register lacks; after a pass, nothing in the register
  that is not published, byte for byte;
- nothing dated past the clock's ceiling (real time plus max_forward_days);
- with the clock right, confirmed by the operator, a pass issues;
- a request the operator reconsiders is answered again in its own folder, and nothing
  else changes;
- every stick's export verifies by its one signature (gpgv, sha256sum -c), each result
  folder's SHA256SUMS listed in it;
- a stick carries back only results of requests it brought, or (before its first export
  gave it its secret) requests other sticks of the same volume ID brought and have not
  yet taken back; whether the export was composed by the command or by the daemon;
- every export's CRLs pass `verify-publication` on a web server serving the ones before
  (signed manifest, their CAs, none older than served), and are served.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from spoolca.config import load_config
from spoolca.errors import ClockError, SpoolcaError
from spoolca.keys.openpgp import stop_agent
from spoolca.process.batch import BatchProcessor
from spoolca.process.passes import run_pass
from spoolca.process.session import CASession
from spoolca.register.chain import GENESIS, body_hash
from spoolca.register.generations import live_names
from spoolca.register.store import Store
from tests.cliserver import CommandServer
from tests.clock import FakeClock
from tests.pki import CA, copy_ca, make_csr, pem, spoolca

MAX_FORWARD = dt.timedelta(days=7)  # the template's [clock] max_forward_days
SLACK = dt.timedelta(minutes=2)


# Profiles are data: two more shipped types, whose requests compose like server ones.
_MORE_PROFILES = '\n[profiles.mail]\nkind = "smime"\n[profiles.signing]\nkind = "codesigning"\n'


_SSH_OFF = ('# [ssh]\n# user_key = "keys/ssh-user-ca.key.pem"\n'
            '# host_key = "keys/ssh-host-ca.key.pem"')
_SSH_ON = '[ssh]\nuser_key = "keys/ssh-user-ca.key.pem"\nhost_key = "keys/ssh-host-ca.key.pem"'
_SSH_PROFILE = ('\n[ssh_profiles.ssh-user]\ntype = "user"\nprincipals = ["alice"]\n'
                'max_days = 30\n')


def _folder(name: str) -> str:
    """The profile folder a request of the model was submitted to, by its name's stem."""
    return next((stem for stem in ("mail", "signing") if name.startswith(stem)), "server")


@dataclass
class Books:
    """What the model knows happened: by request, by serial, by CRL."""

    identity: dict[str, str] = field(default_factory=dict)   # name -> request sha256
    waiting: set[str] = field(default_factory=set)           # submitted, not answered
    answered: set[str] = field(default_factory=set)
    serial: dict[str, str] = field(default_factory=dict)     # request sha256 -> serial
    revoked: dict[str, str] = field(default_factory=dict)    # serial -> reason


@dataclass
class Stick:
    """A stick the model carries: its folder, the volume ID its owner chose, what it
    brought."""

    folder: Path
    uuid: str
    brought: set[str] = field(default_factory=set)


def _identity(data: bytes) -> str:
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError:
        return hashlib.sha256(data).hexdigest()
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(csr.public_bytes(Encoding.DER)).hexdigest()


class CAMachine(RuleBasedStateMachine):
    """One CA, copied from a template, driven by random rules."""

    template: Path  # set by the test before it runs the machine
    created: list[Path]  # the test's list of CA directories whose gpg-agents it stops

    def __init__(self) -> None:
        super().__init__()
        self.scratch = Path(tempfile.mkdtemp(prefix="spoolca-model-"))
        self.ca = self._copy(self.template, self.scratch / "ca-0")
        self.clock = FakeClock(self.scratch)
        self.clock_right = True   # offset 0 and confirmed by the operator since it moved
        self.books = Books()
        self.backups: list[tuple[Path, Books]] = []
        self.crl_contents: dict[tuple[str, int], str] = {}
        self.crl_highest: dict[str, int] = {}
        # A CRL may have been numbered from a wrong clock the guard accepts (a few days
        # ahead) since the last restore without catch-up: the next such restore may then
        # number below it, which backups.md says (the floor is only as good as that clock).
        self.floor_from_wrong_clock = False
        self.crl_forgotten = False  # until a publication passes: served CRLs may be newer
        self.exported: tuple[int, str] = (0, GENESIS)
        self.counter = 0
        self.generation = 0
        self.sticks: list[Stick] = []
        self.unclaimed: dict[str, set[str]] = {}  # volume ID -> brought by a secretless stick
        self.ssh_on = False  # the CA has SSH CAs (`ssh init` ran in its configuration)
        self.backup_ssh: dict[Path, bool] = {}  # whether a backup's configuration had them
        self.ssh_expected: dict[str, str] = {}  # SSH request name -> issued or rejected
        self._server: CommandServer | None = None

    # -- plumbing -------------------------------------------------------------------------

    def _copy(self, source: Path, target: Path) -> CA:
        ca = copy_ca(source, target)
        ca.edit_config('lint = "pkix"', 'lint = "off"')  # composition, not lint, is modelled
        if "[profiles.mail]" not in ca.config.read_text():
            ca.config.write_text(ca.config.read_text() + _MORE_PROFILES)
        return ca

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.clock.offset

    @contextlib.contextmanager
    def _session(self) -> Iterator[CASession]:
        config = load_config(self.ca.config)
        store = Store.of(config)
        try:
            with CASession(config, store, clock=self._now, actor="model") as session:
                yield session
        finally:
            store.close()

    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command under the model's wall clock: in a server process started with it
        (tests/cliserver.py), one interpreter for the sequence instead of one a command."""
        if self._server is None:
            self._server = CommandServer(self.clock.env)
        return self._server.run(["--config", str(self.ca.config), *args])

    def _name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def teardown(self) -> None:
        try:
            self._check_signed_export()
        finally:
            if self._server is not None:
                self._server.close()
            for directory in self.scratch.iterdir():
                stop_agent(directory / "gnupg")
            shutil.rmtree(self.scratch, ignore_errors=True)

    # -- requests -------------------------------------------------------------------------

    @rule()
    def submit_good(self) -> None:
        name = self._name("good")
        data = pem(make_csr(f"{name}.sample.com")[1])
        self.ca.submit(f"server/{name}.csr", data)
        self.books.identity[name] = _identity(data)
        self.books.waiting.add(name)

    @rule(profile=st.sampled_from(["mail", "signing"]))
    def submit_good_of_another_type(self, profile: str) -> None:
        """A request to a profile of a shipped type other than server (S/MIME, code
        signing): it composes with everything a server request does."""
        name = self._name(profile)
        address = f"{name}@sample.com"
        cn, sans = (address, [x509.RFC822Name(address)]) if profile == "mail" else (name, [])
        data = pem(make_csr(cn, sans=sans)[1])
        self.ca.submit(f"{profile}/{name}.csr", data)
        self.books.identity[name] = _identity(data)
        self.books.waiting.add(name)

    @rule()
    def submit_bad(self) -> None:
        name = self._name("bad")
        data = b"not a CSR " + name.encode()
        self.ca.submit(f"server/{name}.csr", data)
        self.books.identity[name] = _identity(data)
        self.books.waiting.add(name)

    @rule()
    def submit_foreign(self) -> None:
        """A well-made CSR the policy refuses (another organization): a policy rejection."""
        name = self._name("foreign")
        data = pem(make_csr(f"{name}.sample.com", company=False)[1])
        self.ca.submit(f"server/{name}.csr", data)
        self.books.identity[name] = _identity(data)
        self.books.waiting.add(name)

    @precondition(lambda self: self.books.answered)
    @rule(data=st.data())
    def reconsider(self, data: st.DataObject) -> None:
        """The operator asks for a rejected request to be decided again: it is queued
        under its own name and answered there; anything else is one sentence, no change."""
        name = data.draw(st.sampled_from(sorted(self.books.answered)))
        if name in self.books.waiting:
            return
        before = self._certificates()
        done = self._cli("reconsider", name)
        if done.returncode == 0:
            assert (self.ca.incoming / _folder(name) / f"{name}.csr").is_file()
            self.books.waiting.add(name)
        else:
            assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert self._certificates() == before

    @precondition(lambda self: any(n.startswith("good") for n in self.books.answered))
    @rule(data=st.data())
    def submit_again(self, data: st.DataObject) -> None:
        """An answered CSR sent again under a new name: its answer, never a second one."""
        earlier = data.draw(st.sampled_from(sorted(n for n in self.books.answered
                                                   if n.startswith("good"))))
        original = self.ca.archive / f"{earlier}.csr"
        if not original.is_file():  # a restore without catch-up forgot it
            return
        name = self._name("again")
        self.ca.submit(f"server/{name}.csr", original.read_bytes())
        self.books.identity[name] = self.books.identity[earlier]
        self.books.waiting.add(name)

    @rule()
    def process(self) -> None:
        """One pass in-process; a refusal (the clock) changes nothing."""
        before = self._certificates()
        try:
            with self._session() as session:
                run_pass(BatchProcessor(session))
        except ClockError:
            assert not self.clock_right, "the clock is right and confirmed, yet refused"
            assert self._certificates() == before
            return
        self._answered_all()

    @precondition(lambda self: self.books.waiting)
    @rule(delay=st.floats(0.0, 1.5), daemon=st.booleans())
    def kill_nine(self, delay: float, daemon: bool) -> None:
        """`process` or the daemon as a real subprocess, SIGKILLed at a random instant;
        what it left is finished by the next pass."""
        command = [sys.executable, "-m", "spoolca.cli", "--config", str(self.ca.config),
                   "serve" if daemon else "process"]
        child = subprocess.Popen(command, env={**os.environ, **self.clock.env},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        stop_agent(self.ca.dir / "gnupg")

    # -- revocation and CRLs ---------------------------------------------------------------

    @precondition(lambda self: set(self.books.serial.values()) - set(self.books.revoked))
    @rule(data=st.data(), reason=st.sampled_from(["keyCompromise", "certificateHold",
                                                   "superseded"]))
    def revoke(self, data: st.DataObject, reason: str) -> None:
        serial = data.draw(st.sampled_from(sorted(set(self.books.serial.values())
                                                  - set(self.books.revoked))))
        try:
            with self._session() as session:
                record = session.revoke(serial, reason, None)
                session.refresh_crls([record.issuer])
        except ClockError:
            assert not self.clock_right
            return
        self.books.revoked[serial] = reason

    @precondition(lambda self: "certificateHold" in self.books.revoked.values())
    @rule(data=st.data())
    def lift_hold(self, data: st.DataObject) -> None:
        serial = data.draw(st.sampled_from(sorted(s for s, r in self.books.revoked.items()
                                                  if r == "certificateHold")))
        try:
            with self._session() as session:
                record = session.revoke(serial, "removeFromCRL", None)
                session.refresh_crls([record.issuer])
        except ClockError:
            assert not self.clock_right
            return
        del self.books.revoked[serial]

    @rule()
    def crl(self) -> None:
        try:
            with self._session() as session:
                session.refresh_crls(live_names(session.store, self._now()))
        except ClockError:
            assert not self.clock_right

    @rule(days=st.sampled_from([1, 45, 400]))
    def crl_extended(self, days: int) -> None:
        """The emergency re-sign: every live CA's CRL with a nextUpdate DAYS away."""
        try:
            with self._session() as session:
                session.refresh_crls(live_names(session.store, self._now()),
                                     until=self._now() + dt.timedelta(days=days))
        except ClockError:
            assert not self.clock_right

    @rule(count=st.integers(1, 3))
    def crl_presigned(self, count: int) -> None:
        """A series of future CRLs for a trip that must be skipped."""
        try:
            with self._session() as session:
                session.presign_crls(live_names(session.store, self._now()), count)
        except ClockError:
            assert not self.clock_right

    @rule(days=st.sampled_from([5, 200]), accept=st.booleans())
    def trip_closed(self, days: int, accept: bool) -> None:
        """The visit ends with the next trip planned: refused, recording nothing, when a
        CRL lapses before it, unless the lapse is accepted."""
        before = self._db("SELECT COUNT(*) FROM audit WHERE event = 'trip.closed'")[0][0]
        planned = (self._now() + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        done = self._cli("trip", "close", "--next", planned,
                         *(["--accept-lapse"] if accept else []))
        after = self._db("SELECT COUNT(*) FROM audit WHERE event = 'trip.closed'")[0][0]
        assert done.returncode in (0, 1), done.stderr
        assert after == before + (done.returncode == 0), done.stderr
        assert done.returncode == 0 or (not accept and "lapses at" in done.stderr)

    # -- SSH certificates -------------------------------------------------------------------

    @precondition(lambda self: not self.ssh_on)
    @rule()
    def ssh_init(self) -> None:
        """The operator turns SSH on: [ssh] and a user profile, then `ssh init`."""
        before = self.ca.config.read_text()
        self.ca.config.write_text(before.replace(_SSH_OFF, _SSH_ON) + _SSH_PROFILE)
        done = self._cli("ssh", "init")
        if done.returncode != 0:  # a wrong clock: nothing made, the configuration put back
            assert not self.clock_right, done.stderr
            self.ca.config.write_text(before)
            return
        self.ssh_on = True

    @precondition(lambda self: self.ssh_on)
    @rule(allowed=st.booleans())
    def ssh_request(self, allowed: bool) -> None:
        """An OpenSSH key and its request file: a principal the profile allows, or not."""
        from cryptography.hazmat.primitives.asymmetric import ed25519
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        name = self._name("ssh")
        folder = self.ca.incoming / "ssh-user"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(
            {"principals": ["alice" if allowed else "root"]}))
        line = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
            Encoding.OpenSSH, PublicFormat.OpenSSH)
        (folder / f"{name}.pub").write_bytes(line + b" model\n")
        self.ssh_expected[name] = "issued" if allowed else "rejected"

    @precondition(lambda self: self.ssh_on)
    @rule(data=st.data())
    def ssh_revoke(self, data: st.DataObject) -> None:
        live = [row[0] for row in self._db("SELECT serial FROM ssh_certificates WHERE "
                                            "revoked_at IS NULL")]
        if not live:
            return
        serial = data.draw(st.sampled_from(sorted(live)))
        done = self._cli("ssh", "revoke", "--ca", "user", str(serial))
        assert done.returncode == 0 or not self.clock_right, done.stderr

    @rule(minutes=st.sampled_from([0, 10]))
    def backdating(self, minutes: int) -> None:
        """The operator sets [clock] backdate_minutes: ADCS's clock skew, or none."""
        text = self.ca.config.read_text()
        self.ca.config.write_text(re.sub(r"(?m)^backdate_minutes = \d+",
                                         f"backdate_minutes = {minutes}", text))

    # -- the clock -------------------------------------------------------------------------

    @rule(days=st.sampled_from([-2, 3, 30, 400]))
    def clock_goes_wrong(self, days: int) -> None:
        """The system clock set wrong (behind, a little ahead, far ahead)."""
        self.clock.set(dt.timedelta(days=days))
        self.clock_right = False
        self.floor_from_wrong_clock = True

    @rule()
    def operator_fixes_the_clock(self) -> None:
        """The right time, confirmed against a trusted clock where the guard asks."""
        self.clock.set(dt.timedelta(0))
        if self._cli("clock").returncode != 0:
            typed = self._now().strftime("%Y-%m-%dT%H:%M:%SZ")
            done = self._cli("clock", "confirm", "--time", typed, "--repair")
            assert done.returncode == 0, done.stderr
        assert self._cli("clock").returncode == 0
        self.clock_right = True

    # -- backups ---------------------------------------------------------------------------

    @precondition(lambda self: len(self.backups) < 3)
    @rule()
    def backup(self) -> None:
        archive = self.scratch / f"backup-{len(self.backups)}.tar.gz"
        made = self._cli("backup", str(archive))
        if made.returncode != 0:
            assert not self.clock_right or "clock" in made.stderr, made.stderr
            return
        self.backups.append((archive, copy.deepcopy(self.books)))
        self.backup_ssh[archive] = self.ssh_on

    @precondition(lambda self: self.backups)
    @rule(data=st.data(), catch_up=st.booleans())
    def restore(self, data: st.DataObject, catch_up: bool) -> None:
        """The appliance replaced by a backup, caught up from a copy of its outgoing/ (or
        not: then what came after the backup is forgotten, as restore warns)."""
        archive, books = data.draw(st.sampled_from(self.backups))
        self.ssh_on = self.backup_ssh[archive]  # the configuration comes back with it
        self.generation += 1
        target = self.scratch / f"ca-{self.generation}"
        source = self.scratch / f"outgoing-{self.generation}"
        shutil.copytree(self.ca.outgoing, source)
        extra = ["--catch-up", str(source)] if catch_up else []
        done = spoolca("restore", str(archive), "--dir", str(target), "--fingerprint",
                       self._fingerprint(), *extra, env=self.clock.env)
        assert done.returncode == 0, done.stderr
        self.created.append(target)
        old, self.ca = self.ca, CA(target)
        for waiting in self.books.waiting:  # the requests still queued come along
            for found in (*old.incoming.rglob(f"{waiting}.csr"),
                          *(old.dir / "spool" / "work").rglob(f"{waiting}.csr")):
                self.ca.submit(f"{_folder(waiting)}/{waiting}.csr", found.read_bytes())
        stop_agent(old.dir / "gnupg")
        if catch_up and "two histories" in done.stdout:
            # The copy's log had forked from the backup's (it descends from an earlier
            # restore): its certificates and CRLs are folded, its log cannot be, and the
            # log goes on from the backup's history, which restore says.
            self.exported = (0, GENESIS)
        if not catch_up:
            current = self.books
            self.books = copy.deepcopy(books)
            self.books.waiting = {n for n in current.waiting
                                  if (self.ca.incoming / _folder(n) / f"{n}.csr").exists()}
            self.books.identity.update({n: current.identity[n] for n in self.books.waiting})
            self.exported = (0, GENESIS)  # a new log; restore said what was lost
            if self.floor_from_wrong_clock:
                self.crl_contents, self.crl_highest = {}, {}
                self.crl_forgotten = True
            self.floor_from_wrong_clock = not self.clock_right
        self.clock_right = self.clock_right and self._cli("clock").returncode == 0

    # -- stick and audit -------------------------------------------------------------------

    @rule()
    def media_export(self) -> None:
        stick = Path(tempfile.mkdtemp(dir=self.scratch, prefix="stick-"))
        identity = stick / "identity"
        identity.write_text(f"UUID={self.counter:04X}-ABCD\nLABEL=SPOOLCA\n")
        made = self._cli("media", "export", str(stick), "--identity", str(identity))
        assert made.returncode == 0 or not self.clock_right, made.stderr
        if made.returncode == 0:
            self._publish(stick / "spoolca-results")

    def _publish(self, export: Path) -> None:
        """The web server's deployment step, by its own (right) clock: verify-publication
        against what it serves, then serve what passed. A genuine export always passes,
        but for CRLs whose CA file the appliance had not published yet, and for a
        rollback after the model forgot its CRL memory (a restore under a wrong clock)."""
        served = self.scratch / "served"
        done = spoolca("verify-publication", str(export), "--served", str(served),
                       "--fingerprint", self._fingerprint())
        refused = [line for line in done.stdout.splitlines() if line.startswith("REFUSED")]
        allowed = ["its CA certificate is not on this export"]
        allowed += ["rolled back"] if self.crl_forgotten else []
        assert all(any(why in line for why in allowed) for line in refused), done.stdout
        assert done.returncode == (1 if refused else 0), done.stdout + done.stderr
        crls = sorted((export / "crl").glob("*.crl"))
        if crls and not refused:  # served: what comes next is judged against these
            served.mkdir(exist_ok=True)
            for crl in crls:
                shutil.copyfile(crl, served / crl.name)
            self.crl_forgotten = False

    @rule(data=st.data(), through_daemon=st.booleans())
    def stick_round_trip(self, data: st.DataObject, through_daemon: bool) -> None:
        """A stick (new, with one of two volume IDs, or one seen before) brings a request,
        is answered and exported to: by the command, or composed by the daemon."""
        if not self.sticks or data.draw(st.booleans(), label="new stick"):
            folder = Path(tempfile.mkdtemp(dir=self.scratch, prefix="stick-"))
            uuid = data.draw(st.sampled_from(["1111-AAAA", "2222-BBBB"]), label="uuid")
            self.sticks.append(Stick(folder, uuid))
        stick = data.draw(st.sampled_from(self.sticks), label="stick")
        name = self._name("stick")
        (stick.folder / "server").mkdir(exist_ok=True)
        (stick.folder / "server" / f"{name}.csr").write_bytes(
            pem(make_csr(f"{name}.sample.com")[1]))
        identity = self.scratch / f"id-{stick.uuid}"
        identity.write_text(f"UUID={stick.uuid}\nLABEL=SPOOLCA\n")
        secretless = not (stick.folder / ".spoolca-stick").exists()
        if self._cli("media", "ingest", "--identity", str(identity), str(stick.folder)
                     ).returncode != 0:
            return
        shutil.rmtree(stick.folder / "server")  # taken: the requester keeps no copy here
        stick.brought.add(name)
        if secretless:
            self.unclaimed.setdefault(stick.uuid, set()).add(name)
        self.process()
        allowed = stick.brought | (self.unclaimed.get(stick.uuid, set()) if secretless
                                   else set())
        made = self._export(stick, identity, through_daemon and self.clock_right)
        if made.returncode != 0:
            assert not self.clock_right, made.stderr
            return
        results = stick.folder / "spoolca-results" / "results"
        carried = set(os.listdir(results)) if results.is_dir() else set()
        assert carried <= allowed, f"{stick.folder.name} carried {carried - allowed}"
        self._one_signature_covers(stick.folder / "spoolca-results")
        if secretless:  # moved to this stick's secret: its exports re-send them
            stick.brought |= self.unclaimed.get(stick.uuid, set())
            self.unclaimed[stick.uuid] = set()

    def _one_signature_covers(self, export: Path) -> None:
        """An export verifies as its README says (gpgv with the appliance key it carries,
        sha256sum -c), by one signature whatever it holds: each result folder's own
        SHA256SUMS is listed in the signed one and checks on its own."""
        keyring = self.scratch / f"keyring-{self.counter}.gpg"
        subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "--output", str(keyring),
                        str(export / "audit" / "appliance-key.asc")], check=True,
                       capture_output=True)
        verified = subprocess.run(["gpgv", "--keyring", str(keyring), "SHA256SUMS.asc",
                                   "SHA256SUMS"], cwd=export, capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr
        signed = (export / "SHA256SUMS").read_text()
        for folder in [export, *sorted((export / "results").glob("*"))]:
            checked = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"],
                                     cwd=folder, capture_output=True, text=True)
            assert checked.returncode == 0, checked.stdout
            if folder != export:
                assert f"  results/{folder.name}/SHA256SUMS\n" in signed, folder.name
                assert not (folder / "SHA256SUMS.asc").exists(), "a signature per folder"

    def _export(self, stick: Stick, identity: Path, through_daemon: bool
                ) -> subprocess.CompletedProcess[str]:
        command = ("media", "export", "--identity", str(identity), str(stick.folder))
        if not through_daemon:
            return self._cli(*command)
        from tests.daemon import NotifySocket

        notify = NotifySocket(self.scratch / f"notify-{self.counter}.sock")
        log = self.scratch / f"daemon-{self.counter}.log"
        with log.open("wb") as stderr:
            daemon = subprocess.Popen([sys.executable, "-m", "spoolca.cli", "--config",
                                       str(self.ca.config), "serve"],
                                      env={**os.environ, **self.clock.env,
                                           "NOTIFY_SOCKET": str(notify.path)},
                                      stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            try:
                notify.wait_for("READY=1", timeout=60)
            except AssertionError:  # say why: the daemon's exit and its last words
                raise AssertionError(f"the daemon did not get ready (exit {daemon.poll()}): "
                                     f"{log.read_text()[-3000:]}") from None
            return self._cli(*command[:2], "--through-daemon", "--wait", "30", *command[2:])
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
            notify.close()
            stop_agent(self.ca.dir / "gnupg")

    @rule()
    def audit_export_and_verify(self) -> None:
        if self._cli("audit", "export").returncode != 0:
            assert not self.clock_right
            return
        verified = self._cli("audit", "verify", "--dir", str(self.ca.outgoing / "audit"),
                             "--fingerprint", self._fingerprint())
        assert verified.returncode == 0, verified.stdout + verified.stderr

    # -- invariants ------------------------------------------------------------------------

    def _db(self, sql: str, *args: object) -> list[tuple]:
        with contextlib.closing(sqlite3.connect(self.ca.dir / "ca.db")) as db:
            return db.execute(sql, args).fetchall()

    def _certificates(self) -> int:
        return self._db("SELECT COUNT(*) FROM certificates")[0][0]

    def _fingerprint(self) -> str:
        return self._db("SELECT value FROM meta WHERE key = 'audit_key_fingerprint'")[0][0]

    def _answered_all(self) -> None:
        """After a pass: every waiting request answered, in its own folder."""
        for name in sorted(self.books.waiting):
            result = json.loads((self.ca.outgoing / name / "result.json").read_text())
            assert result["request_sha256"] == self.books.identity[name], name
            if result["status"] == "issued":
                serial = self.books.serial.setdefault(result["request_sha256"],
                                                      result["serial"])
                assert serial == result["serial"], f"{name}: a second certificate"
            self.books.answered.add(name)
        self.books.waiting.clear()
        self._published_is_the_register()

    def _published_is_the_register(self) -> None:
        """Nothing in the register that is not published, byte for byte (after a pass)."""
        for name, der in self._db("SELECT s.output_name, c.der FROM submissions s JOIN "
                                  "certificates c ON c.serial = s.serial WHERE s.status = "
                                  "'issued' AND s.profile != 'revoke'"):
            cert = self.ca.outgoing / name / "cert.crt"
            assert not der or cert.read_bytes() == der, name

    @invariant()
    def one_certificate_per_request(self) -> None:
        twice = self._db("SELECT request_sha256, COUNT(*) FROM certificates GROUP BY "
                         "request_sha256 HAVING COUNT(*) > 1")
        assert not twice, twice

    @invariant()
    def every_logged_event_is_catalogued(self) -> None:
        """The auditor's reference (register.events) names every kind of entry written."""
        from spoolca.register.events import EVENTS

        unknown = {row[0] for row in self._db("SELECT DISTINCT event FROM audit")} - set(EVENTS)
        assert not unknown, f"audit events missing from the catalogue: {sorted(unknown)}"

    @invariant()
    def nothing_published_that_the_register_lacks(self) -> None:
        known = {row[0] for row in self._db("SELECT output_name FROM submissions")}
        with os.scandir(self.ca.outgoing) as entries:
            published = [e.name for e in entries if not e.name.startswith(".")
                         and os.path.isfile(os.path.join(e.path, "result.json"))]
        for name in published:  # a dot-name is staged, not published
            assert name in known, f"outgoing/{name} is not in the register"

    @invariant()
    def every_revocation_is_on_the_crl_made_after_it(self) -> None:
        for path in (self.ca.outgoing / "crl").glob("*.crl"):
            crl = x509.load_der_x509_crl(path.read_bytes())
            made = crl.last_update_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
            listed = {f"{e.serial_number:X}" for e in crl}
            rows = self._db("SELECT serial FROM certificates WHERE issuer = ? AND revoked_at "
                            "IS NOT NULL AND revoked_at <= ?", path.stem, made)
            for (serial,) in rows:
                assert serial.lstrip("0") in {s.lstrip("0") for s in listed}, \
                    f"{serial} revoked before {path.name} #{self._number(crl)} but not on it"

    @invariant()
    def crl_numbers_are_never_reused_and_never_go_down(self) -> None:
        for path in (self.ca.outgoing / "crl").glob("*.crl"):
            data = path.read_bytes()
            number = self._number(x509.load_der_x509_crl(data))
            digest = hashlib.sha256(data).hexdigest()
            seen = self.crl_contents.setdefault((path.stem, number), digest)
            assert seen == digest, f"{path.stem} CRL #{number} published twice, differently"
            assert number >= self.crl_highest.get(path.stem, 0), f"{path.stem} CRL went down"
            self.crl_highest[path.stem] = number

    @invariant()
    def a_presigned_series_is_above_the_current_crl_or_gone(self) -> None:
        """Every pre-signed CRL still on offer is numbered above its CA's current CRL: a
        newer CRL voids the series (it leaves outgoing/), so the web server can never be
        handed one that would roll a newer CRL back."""
        for path in (self.ca.outgoing / "crl-presigned").glob("*--from-*.crl"):
            name = path.name.split("--from-")[0]
            current = self.ca.outgoing / "crl" / f"{name}.crl"
            number = self._number(x509.load_der_x509_crl(path.read_bytes()))
            assert not current.exists() or number > self._number(
                x509.load_der_x509_crl(current.read_bytes())), f"{path.name} is stale"

    @invariant()
    def ssh_answers_are_the_register_and_the_krl_its_revocations(self) -> None:
        """Each SSH request answered as the policy says, its certificate the register's
        byte for byte; the KRL (once published) lists every revoked serial."""
        for name, expected in self.ssh_expected.items():
            result = self.ca.outgoing / name / "result.json"
            if not result.exists():
                continue  # not answered yet, or forgotten by a restore without catch-up
            body = json.loads(result.read_text())
            assert body["status"] == expected, body
            if expected == "issued":
                [(line,)] = self._db("SELECT certificate FROM ssh_certificates WHERE ca = "
                                     "'user' AND serial = ?", body["serial"])
                cert = self.ca.outgoing / name / f"{name}-cert.pub"
                assert cert.read_text().strip() == line.strip(), name
        krl = self.ca.outgoing / "ssh" / "revoked-keys.krl"
        if krl.exists():
            listed = krl.read_bytes()
            for (serial,) in self._db("SELECT serial FROM ssh_certificates WHERE revoked_at "
                                      "IS NOT NULL"):
                assert serial.to_bytes(8, "big") in listed, f"{serial} not on the KRL"

    @invariant()
    def a_certificate_lives_as_long_as_its_profile_says(self) -> None:
        """Backdating moves notBefore, never the life: notAfter - notBefore is the
        profile's days less a second (or ends with its CA)."""
        config = load_config(self.ca.config)
        ends = {name: cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
                for name, cert in self._ca_certificates().items()}
        for serial, issuer, profile, not_before, not_after in self._db(
                "SELECT serial, issuer, profile, not_before, not_after FROM certificates "
                "WHERE length(der) > 0"):  # not those known from a caught-up log alone
            if profile not in config.profiles:
                continue
            life = dt.datetime.fromisoformat(not_after) - dt.datetime.fromisoformat(not_before)
            days = config.profiles[profile].validity_days
            assert life == dt.timedelta(days=days, seconds=-1) or \
                not_after == ends.get(issuer), f"{serial} lives {life}, not {days} days"

    @invariant()
    def every_crl_covers_what_its_scope_says(self) -> None:
        """A CRL that says it covers only end-entity (or only CA) certificates is that of
        a CA the register knows to have certified only those."""
        config = load_config(self.ca.config)
        for path in (self.ca.outgoing / "crl").glob("*.crl"):
            try:
                scope = x509.load_der_x509_crl(path.read_bytes()).extensions \
                    .get_extension_for_class(x509.IssuingDistributionPoint).value
            except x509.ExtensionNotFound:
                continue
            kinds = {config.profiles[p].usage.ca if p in config.profiles else p == "cross"
                     for (p,) in self._db("SELECT DISTINCT profile FROM certificates WHERE "
                                          "issuer = ?", path.stem)}
            assert kinds <= {scope.only_contains_ca_certs}, f"{path.name} misstates its scope"

    def _ca_certificates(self) -> dict[str, x509.Certificate]:
        return {name: x509.load_der_x509_certificate(der)
                for name, der in self._db("SELECT name, cert_der FROM authorities")}

    @invariant()
    def nothing_is_dated_past_the_ceiling(self) -> None:
        ceiling = (dt.datetime.now(dt.UTC) + MAX_FORWARD + SLACK).strftime("%Y-%m-%dT%H:%M:%SZ")
        late = self._db("SELECT MAX(not_before) FROM certificates")[0][0] or ""
        assert late <= ceiling, f"a certificate dated {late}"
        crl = self._db("SELECT MAX(this_update) FROM crls")[0][0] or ""
        assert crl <= ceiling, f"a CRL dated {crl}"

    @invariant()
    def the_exported_log_recomputes_and_extends(self) -> None:
        previous, head = GENESIS, (0, GENESIS)
        for segment in sorted((self.ca.outgoing / "audit").glob("log-*.jsonl")):
            for line in segment.read_bytes().splitlines():
                entry = json.loads(line)
                assert entry["prev"] == previous and body_hash(entry) == entry["hash"], \
                    f"exported entry {entry['seq']} does not recompute"
                previous = entry["hash"]
                if entry["seq"] == self.exported[0]:
                    assert entry["hash"] == self.exported[1], "the exported log was rewritten"
                head = (entry["seq"], entry["hash"])
        if head[0] == 0:
            return  # nothing exported yet (a restored appliance before its first seal)
        assert head[0] >= self.exported[0], "the exported log went back"
        self.exported = head

    def _check_signed_export(self) -> None:
        """At the end: the exported log verifies by the appliance key (gpg)."""
        with contextlib.suppress(SpoolcaError):
            self.ca.run("audit", "export")
        verified = self.ca.run("audit", "verify", "--dir", str(self.ca.outgoing / "audit"),
                               "--fingerprint", self._fingerprint())
        assert verified.returncode == 0 or not self.clock_right, verified.stdout

    @staticmethod
    def _number(crl: x509.CertificateRevocationList) -> int:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


__all__ = ["CAMachine"]
