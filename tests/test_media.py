"""The sneakernet round trip, with a hostile stick (a directory: no FAT tools here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from spoolca.keys.openpgp import stop_agent
from tests.pki import CA, make_csr, pem, wait_for


@pytest.fixture
def stick(tmp_path) -> Path:
    folder = tmp_path / "stick"
    (folder / "server").mkdir(parents=True)
    (folder / "client").mkdir()
    return folder


def verify_export(root: Path, folders: list[Path]) -> None:
    """As a receiver checks: plain gpg --verify with the published key, sha256sum -c of
    the whole export; and each result folder on its own (as handed to its requester):
    sha256sum -c in it, its SHA256SUMS listed in the signed one."""
    home = tempfile.mkdtemp(prefix="receiver-")
    try:
        env = {**os.environ, "GNUPGHOME": home}
        subprocess.run(["gpg", "--batch", "--import", str(root / "audit" /
                                                         "appliance-key.asc")],
                       env=env, check=True, capture_output=True)
        verified = subprocess.run(["gpg", "--batch", "--verify", "SHA256SUMS.asc",
                                   "SHA256SUMS"], cwd=root, env=env,
                                  capture_output=True, text=True)
        assert verified.returncode == 0 and "Good signature" in verified.stderr
        signed = (root / "SHA256SUMS").read_text()
        for folder in [root, *folders]:
            sums = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"],
                                  cwd=folder, capture_output=True, text=True)
            assert sums.returncode == 0, sums.stdout + sums.stderr
            if folder != root:
                own = f"{folder.relative_to(root)}/SHA256SUMS"
                line = subprocess.run(["grep", f" {own}$", "SHA256SUMS"], cwd=root,
                                      capture_output=True, text=True).stdout
                assert line and line in signed
                check = subprocess.run(["sha256sum", "--strict", "-c"], input=line, cwd=root,
                                       capture_output=True, text=True)
                assert check.returncode == 0, check.stdout + check.stderr
        # One signature for the whole trip, whatever the number of results.
        # (audit/, crl/ and ceremony/ carry their own signed files, made once each.)
        assert [p.relative_to(root) for p in root.rglob("*.asc")
                if p.parent.name not in ("audit", "crl", "ceremony")] == \
            [Path("SHA256SUMS.asc")]
    finally:
        stop_agent(Path(home))
        shutil.rmtree(home, ignore_errors=True)


class TestIngest:
    def test_a_junk_stick_costs_a_bounded_audit_entry(self, ca: CA, stick: Path):
        """5,000 junk files with long non-UTF-8 names (a 100,000-file stick wrote a 130 MB
        entry): a few listed by name, every one counted by reason, the entry small."""
        folder = os.fsencode(stick / "server")
        for i in range(5000):
            with open(folder + b"/" + b"\xff" * 180 + b"%05d.txt" % i, "wb") as handle:
                handle.write(b"junk")
        good = pem(make_csr("good.sample.com")[1])
        (stick / "server" / "good.csr").write_bytes(good)
        result = ca.run("media", "ingest", str(stick))
        assert result.returncode == 0, result.stderr
        assert "5000 skipped in all" in result.stdout
        entry = json.loads(ca.run("audit", "show", "--json", "--event",
                                  "media.ingested").stdout)[-1]
        size = len(json.dumps(entry["data"]))
        assert size < 64 * 1024, size
        assert len(entry["data"]["skipped"]) == 20  # per reason; 100 at most in all
        assert entry["data"]["skipped_total"] == 5000
        assert entry["data"]["skipped_by_reason"] == {
            "not a request (*.csr, *.pem, *.req, *.der) or a signature (*.asc)": 5000}
        assert all(len(item["file"]) <= 160 for item in entry["data"]["skipped"])
        assert [f["file"] for f in entry["data"]["files"]] == ["server/good.csr"]

    def test_a_private_key_on_the_stick_is_never_taken(self, ca: CA, stick: Path):
        """A key beside its CSR (web.key) and a .pem holding key and CSR together are left
        on the stick with a reason that says so; the appliance keeps no copy of either. The
        counter-case: the CSR alone beside the key is taken."""
        key, csr = make_csr("web.sample.com")
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        (stick / "server" / "web.key").write_bytes(key_pem)
        (stick / "server" / "web.csr").write_bytes(pem(csr))
        (stick / "server" / "both.pem").write_bytes(key_pem + pem(csr))
        assert ca.run("media", "ingest", str(stick)).returncode == 0
        entry = json.loads(ca.run("audit", "show", "--json", "--event",
                                  "media.ingested").stdout)[-1]["data"]
        reasons = {item["file"]: item["reason"] for item in entry["skipped"]}
        assert sorted(reasons) == ["server/both.pem", "server/web.key"]
        assert all(why.startswith("a private key: not taken") for why in reasons.values())
        assert [f["file"] for f in entry["files"]] == ["server/web.csr"]
        taken = [p.read_bytes() for p in ca.incoming.rglob("*") if p.is_file()]
        assert taken and not any(b"PRIVATE KEY" in data for data in taken)

    def test_a_factory_stick_with_raised_limits(self, ca: CA, stick: Path):
        """2,500 requests: the default takes 1,000 and lists the rest as skipped; with
        [media] stick_max_requests = 3000 the whole stick is taken."""
        for i in range(2500):
            (stick / "server" / f"d{i:05d}.csr").write_bytes(f"device {i}".encode())
        default = ca.run("media", "ingest", str(stick))
        assert "copied 1000 file(s)" in default.stdout
        for path in (ca.incoming / "server").iterdir():
            path.unlink()
        ca.edit_config("stick_max_requests = 1000", "stick_max_requests = 3000")
        raised = ca.run("media", "ingest", str(stick))
        assert "copied 2500 file(s)" in raised.stdout, raised.stdout[-500:]

    def test_hostile_stick(self, ca: CA, stick: Path, tmp_path):
        """Symlink, FIFO, a 100 MB file, 10,000 tiny files, odd names: each skipped with its
        reason; the good request and its signature are copied; nothing else is read."""
        secret = tmp_path / "passwd"
        secret.write_text("root:x:0:0")
        good = pem(make_csr("good.sample.com")[1])
        (stick / "server" / "good.csr").write_bytes(good)
        (stick / "server" / "good.csr.asc").write_text("-----BEGIN PGP SIGNATURE-----\n")
        (stick / "server" / "zcopy.csr").write_bytes(good)  # the same content again
        os.symlink(secret, stick / "server" / "passwd.csr")
        os.mkfifo(stick / "server" / "fifo.csr")
        with open(stick / "server" / "huge.csr", "wb") as huge:
            huge.truncate(100 * 1024 * 1024)
        (stick / "server" / "evil\nname.csr").write_bytes(pem(make_csr("nl.sample.com")[1]))
        (stick / "client" / "a..b.csr").write_bytes(pem(make_csr("Ann", sans=[])[1]))
        os.close(os.open(os.fsencode(stick / "client") + b"/\xff\xfe.csr",
                         os.O_CREAT | os.O_WRONLY))
        many = stick / "subca"
        many.mkdir()
        for i in range(10_000):
            (many / f"t{i:05d}.csr").write_bytes(f"{i}".encode())
        (stick / "server" / "orphan.csr.asc").write_text("sig")
        (stick / "server" / "deep").mkdir()
        (stick / "notes").mkdir()
        result = ca.run("media", "ingest", str(stick))
        assert result.returncode == 0, result.stderr
        out = result.stdout
        for needle in ("passwd.csr: a symbolic link (never followed)",
                       "fifo.csr: not a regular file", "huge.csr: too large",
                       "zcopy.csr: the same content as another file on the stick",
                       "server/deep/: folder too deep", "notes/: not a profile folder",
                       "orphan.csr.asc: a signature whose request was not taken",
                       "client/\\xff\\xfe.csr: empty",
                       "more than 1000 requests on one stick"):
            assert needle in out, needle
        incoming = ca.incoming
        assert (incoming / "server" / "good.csr").read_bytes() == good
        assert (incoming / "server" / "good.csr.asc").exists()
        assert (incoming / "server" / "evil_name.csr").exists()
        assert (incoming / "client" / "a..b.csr").exists()
        assert not any(p.name.startswith(".") for p in incoming.rglob("*"))
        assert secret.read_text() == "root:x:0:0"
        assert b"root:x" not in b"".join(p.read_bytes() for p in incoming.rglob("*")
                                          if p.is_file())
        events = json.loads(ca.run("audit", "show", "--json", "--event",
                                   "media.ingested").stdout)
        assert events and any(f["sha256"] for f in events[0]["data"]["files"])


class TestIngestTwice:
    def test_the_same_stick_ingested_twice_is_answered_once(self, ca: CA, stick: Path):
        """Ingested again before the daemon took it: the copy waiting is not doubled
        (it was answered twice, under NAME and NAME-2, one certificate, two folders)."""
        (stick / "server" / "twice.csr").write_bytes(pem(make_csr("twice.sample.com")[1]))
        assert ca.run("media", "ingest", str(stick)).returncode == 0
        again = ca.run("media", "ingest", str(stick))
        assert again.returncode == 0 and "already copied in" in again.stdout
        assert sorted(p.name for p in (ca.incoming / "server").iterdir()) == ["twice.csr"]
        ca.process()
        assert not (ca.outgoing / "twice-2").exists()
        assert ca.result("twice")["status"] == "issued"


class TestRoundTrip:
    def test_results_go_back_signed_and_only_this_sticks(self, ca: CA, stick: Path):
        """ingest, process, export: this stick's results, CA files, CRLs and audit log,
        checked with plain gpg --verify and sha256sum -c."""
        (stick / "server" / "web.csr").write_bytes(pem(make_csr("web.sample.com")[1]))
        (stick / "server" / "bad.csr").write_bytes(b"garbage")
        assert ca.run("media", "ingest", str(stick)).returncode == 0
        ca.submit("server/other.csr", pem(make_csr("other.sample.com")[1]))  # not on the stick
        ca.process()
        result = ca.run("media", "export", str(stick))
        assert result.returncode == 0, result.stderr
        root = stick / "spoolca-results"
        assert sorted(p.name for p in (root / "results").iterdir()) == ["bad", "web"]
        for folder in ("ca", "crl", "audit"):
            assert any((root / folder).iterdir())
        manifest = json.loads((root / "MANIFEST.json").read_text())
        assert manifest["audit_head"]["seq"] > 0 and manifest["results"] == ["bad", "web"]
        readme = (root / "README.txt").read_text()
        assert "Bring this stick back between" in readme
        # For the requester: where requests go (this CA's own profiles), and no keys.
        assert "client/, server/, subca/" in readme and "Never put a private key" in readme
        for named in re.findall(r"^(\S+/)\s", readme, re.M):  # every folder it names is there
            assert (root / named.replace("NAME", "web")).is_dir(), named
        verify_export(root, [root / "results" / "web", root / "results" / "bad"])

    def test_a_tampered_export_fails_the_checks(self, ca: CA, stick: Path):
        """Counter-case: a certificate swapped on the stick fails sha256sum -c."""
        (stick / "server" / "web.csr").write_bytes(pem(make_csr("web.sample.com")[1]))
        ca.run("media", "ingest", str(stick))
        ca.process()
        ca.run("media", "export", str(stick))
        folder = stick / "spoolca-results" / "results" / "web"
        (folder / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nforged\n")
        sums = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=folder,
                              capture_output=True, text=True)
        assert sums.returncode != 0 and "cert.pem: FAILED" in sums.stdout
        # ... and the folder's SHA256SUMS made to match fails the signed one.
        (folder / "SHA256SUMS").write_text(subprocess.run(
            ["sha256sum", "cert.pem", "cert.crt", "chain.pem", "fullchain.pem", "result.json"],
            cwd=folder, capture_output=True, text=True, check=True).stdout)
        whole = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"],
                               cwd=folder.parent.parent, capture_output=True, text=True)
        assert whole.returncode != 0
        assert "results/web/SHA256SUMS: FAILED" in whole.stdout


class TestThroughTheDaemon:
    """The media unit holds no key: the daemon composes and signs its export (issue 25,
    item 3). The bytes on the stick verify exactly as a hand-made export's do."""

    def test_the_daemon_composes_what_the_unit_writes(self, ca: CA, stick: Path, tmp_path):
        from tests.daemon import serving

        (stick / "server" / "d.csr").write_bytes(pem(make_csr("d.sample.com")[1]))
        with serving(ca, tmp_path):
            assert ca.run("media", "ingest", "--wait", "30", str(stick)).returncode == 0
            done = ca.run("media", "export", "--through-daemon", str(stick))
            assert done.returncode == 0, done.stderr
        top = stick / "spoolca-results"
        assert os.listdir(top / "results") == ["d"]
        verify_export(top, [top / "results" / "d"])
        fingerprint = json.loads((top / "MANIFEST.json").read_text())["appliance_key"]
        verify = ca.run("audit", "verify", "--dir", str(top / "audit"), "--fingerprint",
                        fingerprint)
        assert verify.returncode == 0, verify.stderr
        assert not list((ca.dir / "spool" / "exports").glob("[0-9a-f]*")), "left behind"

    def test_without_a_daemon_it_fails_in_one_sentence(self, ca: CA, stick: Path):
        """Counter-case: nobody composes; one sentence, no partial export on the stick."""
        (stick / "server" / "n.csr").write_bytes(pem(make_csr("n.sample.com")[1]))
        ca.run("media", "ingest", str(stick))
        done = ca.run("media", "export", "--through-daemon", "--wait", "1", str(stick))
        assert done.returncode == 1 and "did not compose the export" in done.stderr, \
            done.stderr
        assert not (stick / "spoolca-results").exists()
        assert not (stick / ".spoolca-results.part").exists()
        assert not list((ca.dir / "spool" / "exports" / "requests").iterdir()), "withdrawn"

    def test_a_hostile_request_gets_one_sentence_and_the_daemon_goes_on(self, ca: CA,
                                                                        tmp_path):
        """What the media unit asks is input: a request naming no stick is refused."""
        from tests.daemon import issue_one, serving

        requests = ca.dir / "spool" / "exports" / "requests"
        requests.mkdir(parents=True)
        bad = "0" * 32
        (requests / f"{bad}.json").write_text('{"medium": {"path": ["/etc"]}}')
        with serving(ca, tmp_path):
            wait_for((ca.dir / "spool" / "exports" / f"{bad}.failed").exists, 20,
                     "the request answered")
            issue_one(ca, "after")
        assert "names no stick" in (ca.dir / "spool" / "exports" / f"{bad}.failed").read_text()


class TestWaiting:
    def test_ingest_waits_for_the_daemon(self, ca: CA, stick: Path, tmp_path):
        """media ingest --wait returns once the running daemon has answered the stick."""
        from tests.daemon import NotifySocket, Running

        (stick / "server" / "w.csr").write_bytes(pem(make_csr("w.sample.com")[1]))
        notify = NotifySocket(tmp_path / "notify.sock")
        running = Running(ca, notify)
        try:
            notify.wait_for("READY=1")
            result = ca.run("media", "ingest", "--wait", "30", str(stick))
            assert result.returncode == 0 and "all 1 request(s) answered" in result.stdout
            assert ca.result("w")["status"] == "issued"
        finally:
            running.stop()
            notify.close()

    def test_an_answer_recorded_and_not_yet_published_is_waited_for(self, ca: CA,
                                                                   stick: Path, tmp_path):
        """The media unit exports right after --wait, and an export carries only what is
        published: a request the register has decided and outgoing/ does not hold yet
        (here its folder removed, as between the daemon's commit and its publication) is
        not "answered"; --wait said so at once and the stick left without it."""
        csr = pem(make_csr("w.sample.com")[1])
        (stick / "server" / "w.csr").write_bytes(csr)
        assert ca.run("media", "ingest", str(stick)).returncode == 0
        ca.process()
        shutil.rmtree(ca.outgoing / "w")
        again = tmp_path / "again"
        (again / "server").mkdir(parents=True)
        (again / "server" / "w.csr").write_bytes(csr)
        result = ca.run("media", "ingest", "--wait", "1", str(again))
        assert result.returncode == 1 and "only 0 of 1" in result.stdout, result.stdout

    def test_waiting_without_a_daemon_times_out(self, ca: CA, stick: Path):
        """Counter-case: nobody answers; exit 1 after the deadline, the request kept."""
        (stick / "server" / "w.csr").write_bytes(pem(make_csr("w.sample.com")[1]))
        result = ca.run("media", "ingest", "--wait", "1", str(stick))
        assert result.returncode == 1 and "only 0 of 1" in result.stdout
        assert (ca.incoming / "server" / "w.csr").exists()


class TestStickIdentity:
    def test_two_sticks_through_one_mount_point(self, ca: CA, tmp_path: Path):
        """Every stick is mounted at the same path, and a path is no identity: stick B
        carried stick A's results back out. With no UUID, export writes only what the
        same round trip brought in."""
        mount = tmp_path / "run" / "spoolca-media" / "sdb1"

        def trip(name: str) -> list[str]:
            if mount.exists():
                shutil.rmtree(mount)
            (mount / "server").mkdir(parents=True)
            (mount / "server" / f"{name}.csr").write_bytes(
                pem(make_csr(f"{name}.sample.com")[1]))
            assert ca.run("media", "ingest", str(mount)).returncode == 0
            ca.process()
            assert ca.run("media", "export", str(mount)).returncode == 0
            return sorted(os.listdir(mount / "spoolca-results" / "results"))

        assert trip("alice") == ["alice"]
        assert trip("bob") == ["bob"]

    def test_an_export_without_its_ingest_carries_no_results(self, ca: CA, tmp_path: Path):
        """Counter-case: a stick with no UUID that brought nothing gets the CA's public
        files only, never someone's results; the stick that brought them, known now by
        the secret its first export gave it, gets them again."""
        stick = tmp_path / "stick"
        (stick / "server").mkdir(parents=True)
        (stick / "server" / "alice.csr").write_bytes(pem(make_csr("alice.sample.com")[1]))
        assert ca.run("media", "ingest", str(stick)).returncode == 0
        ca.process()
        assert ca.run("media", "export", str(stick)).returncode == 0
        secret = (stick / ".spoolca-stick").read_bytes()
        shutil.rmtree(stick)  # another stick through the same mount point
        stick.mkdir()
        assert ca.run("media", "export", str(stick)).returncode == 0
        results = stick / "spoolca-results" / "results"
        assert not results.exists() or os.listdir(results) == []
        assert (stick / "spoolca-results" / "ca" / "ca-chain.pem").exists()
        (stick / ".spoolca-stick").write_bytes(secret)  # alice's stick again
        assert ca.run("media", "export", str(stick)).returncode == 0
        assert os.listdir(results) == ["alice"]

    @staticmethod
    def identity(tmp_path: Path, uuid: str) -> Path:
        """What root's blkid read from a stick: its owner chose every byte of it."""
        path = tmp_path / f"id-{uuid}"
        path.write_text(f"UUID={uuid}\nLABEL=SPOOLCA\nTYPE=vfat\n")
        return path

    def test_a_stick_that_copies_a_volume_id_gets_none_of_its_results(self, ca: CA,
                                                                      tmp_path: Path):
        """`mkfs.vfat -i` with a victim's volume ID (every export publishes it): the
        victim's results stay with the victim's stick, which carries its secret."""
        same = self.identity(tmp_path, "1234-ABCD")
        victim, thief = tmp_path / "victim", tmp_path / "thief"
        for stick, name in ((victim, "alice"), (thief, "mallory")):
            (stick / "server").mkdir(parents=True)
            (stick / "server" / f"{name}.csr").write_bytes(
                pem(make_csr(f"{name}.sample.com")[1]))
        for stick in (victim, thief):
            assert ca.run("media", "ingest", "--identity", str(same), str(stick)
                          ).returncode == 0
            ca.process()
            assert ca.run("media", "export", "--identity", str(same), str(stick)
                          ).returncode == 0
        assert os.listdir(victim / "spoolca-results" / "results") == ["alice"]
        assert os.listdir(thief / "spoolca-results" / "results") == ["mallory"]
        # And again, each with its own secret; the victim's secret is in no log.
        for stick in (victim, thief):
            assert ca.run("media", "export", "--identity", str(same), str(stick)
                          ).returncode == 0
        assert os.listdir(victim / "spoolca-results" / "results") == ["alice"]
        assert os.listdir(thief / "spoolca-results" / "results") == ["mallory"]
        secret = (victim / ".spoolca-stick").read_text().strip()
        assert len(secret) == 64
        published = b"".join(p.read_bytes() for p in (thief / "spoolca-results").rglob("*")
                             if p.is_file())
        assert secret.encode() not in published
        assert secret.encode() not in (ca.dir / "ca.db").read_bytes()

    def test_a_stick_with_its_secret_claims_nothing_by_its_volume_id(self, ca: CA,
                                                                    tmp_path: Path):
        """Found by the model test: a stick that already has its secret, exported while
        another stick of the same volume ID waits between its ingest and its first export,
        carried that other stick's results (it still claimed its UUID's). Now only a
        stick given its secret by this very export claims what its UUID brought."""
        same = self.identity(tmp_path, "1111-AAAA")
        first, second = tmp_path / "first", tmp_path / "second"
        for stick, name in ((first, "alice"), (second, "mallory")):
            (stick / "server").mkdir(parents=True)
            (stick / "server" / f"{name}.csr").write_bytes(
                pem(make_csr(f"{name}.sample.com")[1]))
        assert ca.run("media", "ingest", "--identity", str(same), str(first)).returncode == 0
        ca.process()
        assert ca.run("media", "export", "--identity", str(same), str(first)).returncode == 0
        assert ca.run("media", "ingest", "--identity", str(same), str(second)).returncode == 0
        ca.process()
        assert ca.run("media", "export", "--identity", str(same), str(first)).returncode == 0
        assert os.listdir(first / "spoolca-results" / "results") == ["alice"]
        assert ca.run("media", "export", "--identity", str(same), str(second)).returncode == 0
        assert os.listdir(second / "spoolca-results" / "results") == ["mallory"]

    def test_a_stick_secret_that_is_a_link_is_replaced_not_followed(self, ca: CA,
                                                                    tmp_path: Path):
        """The secret's name is on the stick's side: a link there is removed as a link."""
        target = tmp_path / "elsewhere"
        target.write_text("not the stick's")
        stick = tmp_path / "stick"
        (stick / "server").mkdir(parents=True)
        (stick / "server" / "l.csr").write_bytes(pem(make_csr("l.sample.com")[1]))
        (stick / ".spoolca-stick").symlink_to(target)
        assert ca.run("media", "ingest", str(stick)).returncode == 0
        ca.process()
        assert ca.run("media", "export", str(stick)).returncode == 0
        assert target.read_text() == "not the stick's"
        assert not (stick / ".spoolca-stick").is_symlink()
        assert os.listdir(stick / "spoolca-results" / "results") == ["l"]


class TestLinksOnTheStick:
    """A stick with symlink support (ext4, NTFS, a Rock Ridge image, or a folder given to
    `media export DIR` by hand): nothing it holds leads out of it (invariant 16)."""

    @staticmethod
    def victim(tmp_path: Path) -> Path:
        """What a link on the stick points at: a state directory's worth of files."""
        folder = tmp_path / "victim"
        (folder / "keys").mkdir(parents=True)
        (folder / "keys" / "root.key.pem").write_text("the key")
        (folder / "ca.db").write_text("the register")
        return folder

    @pytest.mark.parametrize("planted", [".spoolca-results.part", "spoolca-results"])
    def test_a_link_named_like_our_folder_is_removed_not_followed(self, ca: CA, stick: Path,
                                                                   tmp_path: Path,
                                                                   planted: str):
        """`.spoolca-results.part -> /var/lib/spoolca` emptied the state directory at the
        export's clean-up; now the link itself is replaced, the target keeps every file."""
        victim = self.victim(tmp_path)
        (stick / planted).symlink_to(victim)
        made = ca.run("media", "export", str(stick))
        assert made.returncode == 0, made.stderr
        assert sorted(p.name for p in victim.rglob("*")) == ["ca.db", "keys", "root.key.pem"]
        assert (victim / "keys" / "root.key.pem").read_text() == "the key"
        root = stick / "spoolca-results"
        assert root.is_dir() and not root.is_symlink()
        assert not (stick / ".spoolca-results.part").exists()
        assert (root / "MANIFEST.json").exists()

    def test_a_link_inside_an_old_export_is_not_followed(self, ca: CA, stick: Path,
                                                          tmp_path: Path):
        """The previous export holding `results -> victim`: replaced, the victim kept."""
        victim = self.victim(tmp_path)
        (stick / "spoolca-results").mkdir()
        (stick / "spoolca-results" / "results").symlink_to(victim)
        assert ca.run("media", "export", str(stick)).returncode == 0
        assert (victim / "ca.db").read_text() == "the register"

    def test_a_stick_folder_that_is_a_link_is_refused(self, ca: CA, stick: Path,
                                                      tmp_path: Path):
        """The stick's folder itself a link: one sentence, nothing written or read."""
        link = tmp_path / "link"
        link.symlink_to(stick)
        for command in ("export", "ingest"):
            result = ca.run("media", command, str(link))
            assert result.returncode == 1 and "symbolic link" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
        assert not (stick / "spoolca-results").exists()

    def test_ingest_takes_nothing_through_a_link_or_a_special_file(self, ca: CA,
                                                                    stick: Path,
                                                                    tmp_path: Path):
        """A profile folder that is a link to a folder of CSRs, a CSR that is a link, a
        FIFO and a device node: none is taken (none is even opened), each is listed."""
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "stolen.csr").write_bytes(pem(make_csr("stolen.sample.com")[1]))
        shutil.rmtree(stick / "client")
        (stick / "client").symlink_to(outside)
        (stick / "server" / "link.csr").symlink_to(outside / "stolen.csr")
        os.mkfifo(stick / "server" / "fifo.csr")
        os.mknod(stick / "server" / "tape.csr", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        (stick / "server" / "good.csr").write_bytes(pem(make_csr("good.sample.com")[1]))
        result = ca.run("media", "ingest", str(stick), timeout=60)
        assert result.returncode == 0, result.stderr
        taken = sorted(p.name for p in ca.incoming.rglob("*") if p.is_file())
        assert taken == ["good.csr"]
        assert "skipped server/link.csr: a symbolic link (never followed)" in result.stdout
        assert "skipped server/fifo.csr: not a regular file" in result.stdout
        assert "skipped server/tape.csr: not a regular file" in result.stdout
