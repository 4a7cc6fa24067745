"""SSH certificates through the spool (issue 30), judged by OpenSSH itself: ssh-keygen
reads every certificate and the KRL; a real sshd on 127.0.0.1 lets a user certificate
log in and refuses an expired one, a wrong principal and a revoked one; a client with the
exported @cert-authority line accepts a host certificate and refuses one for another
name."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spoolca.keys.openpgp import stop_agent
from tests.clock import FakeClock
from tests.nginx import free_port
from tests.pki import CA, wait_for

SSHD = "/usr/sbin/sshd"
needs_sshd = pytest.mark.skipif(not os.path.exists(SSHD), reason="needs openssh-server")

SSH_CONFIG = '''
[ssh_profiles.ssh-user]
type = "user"
principals = ["root", "alice", "deploy-*"]
max_days = 30
default_days = 1
critical_options = ["source-address", "force-command"]
[ssh_profiles.ssh-host]
type = "host"
principals = ["localhost", "*.hosts.sample.com"]
max_days = 365
'''


def with_ssh(ca: CA) -> CA:
    text = ca.config.read_text().replace(
        '# [ssh]\n# user_key = "keys/ssh-user-ca.key.pem"\n'
        '# host_key = "keys/ssh-host-ca.key.pem"',
        '[ssh]\nuser_key = "keys/ssh-user-ca.key.pem"\nhost_key = "keys/ssh-host-ca.key.pem"')
    ca.config.write_text(text + SSH_CONFIG)
    made = ca.run("ssh", "init")
    assert made.returncode == 0, made.stderr
    return ca


@pytest.fixture
def sshca(ca: CA) -> CA:
    return with_ssh(ca)


def keypair(folder: Path, name: str, kind: str = "ed25519", bits: str = "") -> Path:
    """A key made by ssh-keygen, as its owner would; the private half stays here."""
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *(["-b", bits] if bits else []), "-N", "",
                    "-C", f"{name}@laptop", "-f", str(key)], check=True)
    return key


def request(ca: CA, profile: str, key: Path, asked: dict | None = None) -> str:
    """NAME.pub (and NAME.json) into incoming/PROFILE/, processed; the result's name."""
    folder = ca.incoming / profile
    folder.mkdir(parents=True, exist_ok=True)
    if asked is not None:
        (folder / f"{key.name}.json").write_text(json.dumps(asked))
    shutil.copy(key.with_name(key.name + ".pub"), folder / f"{key.name}.pub")
    ca.process()
    return key.name


def issued(ca: CA, name: str, key: Path) -> Path:
    """The certificate, put beside its key as ssh expects (KEY-cert.pub)."""
    result = ca.result(name)
    assert result["status"] == "issued", result
    cert = key.with_name(f"{key.name}-cert.pub")
    shutil.copy(ca.outgoing / name / f"{name}-cert.pub", cert)
    return cert


class TestRequests:
    def test_every_certificate_reads_in_ssh_keygen(self, sshca: CA, tmp_path):
        for kind, bits in (("ed25519", ""), ("ecdsa", "384"), ("rsa", "3072")):
            key = keypair(tmp_path, f"alice-{kind}", kind, bits)
            name = request(sshca, "ssh-user", key, {"principals": ["alice"], "key_id":
                                                     f"alice {kind}", "validity_days": 3})
            shown = subprocess.run(["ssh-keygen", "-L", "-f", str(issued(sshca, name, key))],
                                   capture_output=True, text=True, check=True).stdout
            assert "user certificate" in shown and f'Key ID: "alice {kind}"' in shown
            assert "alice" in shown.split("Principals:")[1].split("Critical")[0]
            result = sshca.result(name)
            assert result["ssh_ca"] == "user" and result["principals"] == ["alice"]

    def test_every_reason_is_given_and_nothing_is_lost(self, sshca: CA, tmp_path):
        """The counter-cases: a principal outside the profile, too long a validity, an
        option it does not allow, RSA-2048 under a 3072 floor, a host name pattern, a
        certificate sent as a key, a DSA-like junk line: each refused with its reason,
        the files archived, nothing signed."""
        key = keypair(tmp_path, "mallory")
        request(sshca, "ssh-user", key, {"principals": ["root", "bob"], "validity_days": 99,
                                         "critical_options": {"permit-all": "yes"}})
        codes = {r["code"] for r in sshca.result("mallory")["reasons"]}
        assert codes == {"ssh.principal_refused", "ssh.validity_too_long",
                         "ssh.option_refused"}
        small = keypair(tmp_path, "small", "rsa", "2048")
        request(sshca, "ssh-user", small, {"principals": ["alice"]})
        assert [r["code"] for r in sshca.result("small")["reasons"]] == ["ssh.key_too_small"]
        host = keypair(tmp_path, "wild")
        request(sshca, "ssh-host", host, {"principals": ["*.hosts.sample.com"]})
        assert [r["code"] for r in sshca.result("wild")["reasons"]] == [
            "ssh.principal_invalid"]
        folder = sshca.incoming / "ssh-user"
        (folder / "junk.pub").write_bytes(b"ssh-dss AAAAB3NzaC1kc3MAAACB nobody\n")
        sshca.process()
        assert sshca.result("junk")["reasons"][0]["code"] == "ssh.unparseable"
        assert not list(sshca.incoming.rglob("*.pub")) and not list(sshca.incoming.rglob(
            "*.json"))
        archived = {p.name for p in (sshca.dir / "spool" / "archive").iterdir()}
        assert {"mallory.pub", "mallory.pub.json", "junk.pub"} <= archived
        listed = sshca.run("ssh", "list", "--ca", "user", "--json")
        assert json.loads(listed.stdout) == []

    def test_the_same_request_again_gets_the_same_certificate(self, sshca: CA, tmp_path):
        key = keypair(tmp_path, "again")
        request(sshca, "ssh-user", key, {"principals": ["alice"]})
        first = (sshca.outgoing / "again" / "again-cert.pub").read_bytes()
        folder = sshca.incoming / "ssh-user"
        (folder / "again2.json").write_text(json.dumps({"principals": ["alice"]}))
        (folder / "again2.pub").write_bytes(key.with_name("again.pub").read_bytes()
                                           .replace(b"again@laptop", b"other comment"))
        sshca.process()
        assert (sshca.outgoing / "again2" / "again2-cert.pub").read_bytes() == first
        assert len(json.loads(sshca.run("ssh", "list", "--ca", "user", "--json").stdout)) == 1


class Sshd:
    """sshd on 127.0.0.1, trusting the appliance's user CA and its KRL."""

    def __init__(self, folder: Path, ca: CA, host_key: Path, host_cert: Path | None,
                 env: dict[str, str] | None = None) -> None:
        self.port, self.folder = free_port(), folder
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
        ssh = ca.outgoing / "ssh"
        config = folder / "sshd_config"
        config.write_text(f"""
Port {self.port}
ListenAddress 127.0.0.1
HostKey {host_key}
{f"HostCertificate {host_cert}" if host_cert else ""}
PidFile {folder}/sshd.pid
TrustedUserCAKeys {ssh / "user-ca.pub"}
RevokedKeys {ssh / "revoked-keys.krl"}
AuthorizedKeysFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel VERBOSE
""")
        self.log = folder / "sshd.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                            stderr=log, env={**os.environ, **(env or {})})
        wait_for(self._listening, timeout=20, what="sshd listening")

    def _listening(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def login(self, key: Path, user: str = "root", known_hosts: Path | None = None,
              host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
        checking = ["-o", f"UserKnownHostsFile={known_hosts}", "-o",
                    "StrictHostKeyChecking=yes"] if known_hosts else [
            "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no"]
        return subprocess.run(
            ["ssh", "-4", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *checking,
             "-p", str(self.port), f"{user}@{host}", "echo logged-in"],
            capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@needs_sshd
class TestOpenSSH:
    def test_sshd_lets_a_user_certificate_in_and_refuses_the_rest(self, sshca: CA, tmp_path):
        host_key = keypair(tmp_path, "hostkey")
        key = keypair(tmp_path, "operator")
        issued(sshca, request(sshca, "ssh-user", key, {"principals": ["root"]}), key)
        alice = keypair(tmp_path, "alice")
        issued(sshca, request(sshca, "ssh-user", alice, {"principals": ["alice"]}), alice)
        sshd = Sshd(tmp_path, sshca, host_key, None)
        try:
            done = sshd.login(key)
            assert done.returncode == 0 and "logged-in" in done.stdout, done.stderr
            wrong = sshd.login(alice)  # a certificate for alice, logging in as root
            assert wrong.returncode == 255 and "logged-in" not in wrong.stdout
            bare = keypair(tmp_path, "nocert")  # a key without a certificate
            assert sshd.login(bare).returncode == 255
            serial = str(sshca.result("operator")["serial"])
            assert sshca.run("revoke", f"ssh:user:{serial}").returncode == 0  # as X.509
            revoked = sshd.login(key)  # sshd reads RevokedKeys on each connection
            assert revoked.returncode == 255 and "logged-in" not in revoked.stdout
            assert "revoked" in sshd.log.read_text().lower()
            krl = sshca.outgoing / "ssh" / "revoked-keys.krl"
            queried = subprocess.run(["ssh-keygen", "-Q", "-f", str(krl),
                                      str(tmp_path / "operator-cert.pub"),
                                      str(tmp_path / "alice-cert.pub")],
                                     capture_output=True, text=True)
            assert "operator-cert.pub): REVOKED" in queried.stdout
            assert "alice-cert.pub): ok" in queried.stdout
        finally:
            sshd.stop()

    def test_sshd_refuses_an_expired_certificate(self, sshca: CA, tmp_path):
        """sshd's clock two days on (the wall-clock shim): the one-day certificate has
        ended; the same certificate is let in by an sshd on the right time."""
        key = keypair(tmp_path, "shortlived")
        issued(sshca, request(sshca, "ssh-user", key, {"principals": ["root"]}), key)
        later = FakeClock(tmp_path)
        later.set(dt.timedelta(days=2))
        host_key = keypair(tmp_path, "hostkey")
        (tmp_path / "late").mkdir()
        sshd = Sshd(tmp_path / "late", sshca, host_key, None, later.env)
        try:
            refused = sshd.login(key)
            assert refused.returncode == 255 and "logged-in" not in refused.stdout
            assert "expired" in sshd.log.read_text().lower() or \
                "not yet valid" in sshd.log.read_text().lower()
        finally:
            sshd.stop()
        (tmp_path / "now").mkdir()
        sshd = Sshd(tmp_path / "now", sshca, host_key, None)
        try:
            assert sshd.login(key).returncode == 0
        finally:
            sshd.stop()

    def test_a_client_trusts_the_host_certificate_for_its_name_only(self, sshca: CA,
                                                                    tmp_path):
        user = keypair(tmp_path, "operator")
        issued(sshca, request(sshca, "ssh-user", user, {"principals": ["root"]}), user)
        known_hosts = sshca.outgoing / "ssh" / "known_hosts"
        for host, expected in (("localhost", 0), ("web1.hosts.sample.com", 255)):
            folder = tmp_path / host
            folder.mkdir()
            host_key = keypair(folder, "hostkey")
            name = request(sshca, "ssh-host", host_key, {"principals": [host]})
            sshca.result(name)
            cert = issued(sshca, name, host_key)
            sshd = Sshd(folder, sshca, host_key, cert)
            try:
                done = sshd.login(user, known_hosts=known_hosts, host="localhost")
                assert done.returncode == expected, done.stderr
                if expected:
                    assert "logged-in" not in done.stdout
                    assert "certificate" in done.stderr.lower() or \
                        "host key verification failed" in done.stderr.lower()
            finally:
                sshd.stop()


@settings(max_examples=int(os.environ.get("SPOOLCA_FUZZ_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(key=st.binary(max_size=600), asked=st.one_of(st.none(), st.binary(max_size=300)))
def test_any_bytes_are_a_request_or_reasons_never_an_exception(key, asked):
    """The parser of both untrusted files: any bytes give a request or findings."""
    from spoolca.ssh.request import SSHRequest, parse_ssh_request

    parsed = parse_ssh_request(key, asked)
    assert isinstance(parsed, SSHRequest) or (parsed and all(f.code for f in parsed))


@given(asked=st.dictionaries(st.sampled_from(["principals", "key_id", "validity_days",
                                              "extensions", "critical_options", "other"]),
                             st.one_of(st.none(), st.integers(), st.text(max_size=20),
                                       st.lists(st.text(max_size=10), max_size=4),
                                       st.dictionaries(st.text(max_size=8),
                                                       st.text(max_size=8), max_size=3))))
@settings(max_examples=int(os.environ.get("SPOOLCA_FUZZ_EXAMPLES", "300")), deadline=None)
def test_any_request_file_is_judged_without_an_exception(asked):
    """Well-formed JSON of any shape beside a real key: a request the policy judges, or
    reasons; the policy never raises either."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from spoolca.config.sshsettings import EXTENSIONS, SSHProfile
    from spoolca.ssh.policy import judge
    from spoolca.ssh.request import SSHRequest, parse_ssh_request

    line = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        Encoding.OpenSSH, PublicFormat.OpenSSH)
    parsed = parse_ssh_request(line, json.dumps(asked).encode())
    if isinstance(parsed, SSHRequest):
        profile = SSHProfile("p", "user", ("*",), 30, 7, EXTENSIONS, ("source-address",))
        judge(profile, parsed)


class TestLifecycle:
    def test_a_lost_answer_is_rebuilt_from_the_register(self, sshca: CA, tmp_path):
        """A power cut between the commit and the publication (the folder gone): the next
        run publishes the very certificate again, never a second one."""
        key = keypair(tmp_path, "lost")
        request(sshca, "ssh-user", key, {"principals": ["alice"]})
        folder = sshca.outgoing / "lost"
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        shutil.rmtree(folder)
        sshca.process()
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    def test_a_stick_brings_keys_and_takes_certificates_and_the_ca_files(self, sshca: CA,
                                                                        tmp_path):
        stick = tmp_path / "stick"
        (stick / "SSH-USER").mkdir(parents=True)  # FAT shows names in upper case
        key = keypair(tmp_path, "carol")
        shutil.copy(key.with_name("carol.pub"), stick / "SSH-USER" / "CAROL.PUB")
        (stick / "SSH-USER" / "CAROL.JSON").write_text('{"principals": ["alice"]}')
        (stick / "SSH-USER" / "carol").write_bytes(key.read_bytes())  # a private key
        ingested = sshca.run("media", "ingest", str(stick))
        assert ingested.returncode == 0, ingested.stderr
        assert "private key" in ingested.stdout
        sshca.process()
        assert sshca.result("CAROL")["status"] == "issued"
        exported = sshca.run("media", "export", str(stick))
        assert exported.returncode == 0, exported.stderr
        results = stick / "spoolca-results"
        assert (results / "results" / "CAROL" / "CAROL-cert.pub").is_file()
        for name in ("user-ca.pub", "known_hosts", "revoked-keys.krl"):
            assert (results / "ssh" / name).is_file()
        assert (results / "ssh" / "known_hosts").read_text().startswith("@cert-authority * ")
        checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=results,
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout

    def test_a_claim_cut_between_its_renames_keeps_the_request_file(self, sshca: CA,
                                                                     tmp_path):
        """Killed between the claim's renames (the request file goes first): NAME.json
        in the claim round, NAME.pub still in incoming/. Recovery puts the request file
        back, and the key gets what its request file asked (here: principal deploy-web)."""
        key = keypair(tmp_path, "cut")
        folder = sshca.incoming / "ssh-user"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cut.json").write_text(json.dumps({"principals": ["deploy-web"]}))
        shutil.copy(key.with_name("cut.pub"), folder / "cut.pub")
        claim = sshca.dir / "spool" / "work" / "claim-0000000000000001-cccccc" / "ssh-user"
        claim.mkdir(parents=True)
        shutil.move(folder / "cut.json", claim / "cut.json")
        sshca.process()
        result = sshca.result("cut")
        assert result["status"] == "issued" and result["principals"] == ["deploy-web"], result
        assert list((sshca.dir / "spool" / "work").iterdir()) == []

    def test_ssh_init_is_once_and_needs_the_ssh_table(self, ca: CA):
        refused = ca.run("ssh", "init")
        assert refused.returncode == 1 and "[ssh]" in refused.stderr
        with_ssh(ca)
        again = ca.run("ssh", "init")
        assert again.returncode == 1 and "exist already" in again.stderr
        events = json.loads(ca.run("audit", "show", "--event", "ssh.", "--json").stdout)
        assert [e["event"] for e in events] == ["ssh.ca_created"]
        [record] = (ca.outgoing / "ceremony").glob("*-ssh-init.txt")
        text = record.read_text()
        user_line = (ca.outgoing / "ssh" / "user-ca.pub").read_text()
        printed = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=user_line,
                                 capture_output=True, text=True, check=True).stdout.split()[1]
        assert f"SSH user CA: ssh-ed25519 {printed}" in text  # as ssh-keygen -l prints it
        verified = subprocess.run(["gpg", "--homedir", str(ca.dir / "gnupg"), "--verify",
                                   f"{record}.asc", str(record)], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr
        keys = ca.dir / "keys"
        for name in ("ssh-user-ca.key.pem", "ssh-host-ca.key.pem"):
            assert (keys / name).stat().st_mode & 0o777 == 0o400

    def test_a_restore_catches_up_the_ssh_certificates_made_since_the_backup(
            self, sshca: CA, tmp_path):
        """Backup, then a certificate; the appliance is restored from the backup with a
        copy of outgoing/: the certificate is folded back (listed, revocable) and the same
        request again gets it, not a second one. A certificate not signed by our CA, in
        the copy, is not folded (the counter-case)."""
        from tests.pki import fingerprint_of

        archive = tmp_path / "backup.tar.gz"
        assert sshca.run("backup", str(archive)).returncode == 0
        key = keypair(tmp_path, "after")
        request(sshca, "ssh-user", key, {"principals": ["alice"]})
        copy = tmp_path / "outgoing-copy"
        shutil.copytree(sshca.outgoing, copy)
        forged = copy / "forged"
        forged.mkdir()
        other = keypair(tmp_path, "otherca")
        subprocess.run(["ssh-keygen", "-q", "-s", str(other), "-I", "x", "-n", "alice",
                        str(key.with_name("after.pub"))], check=True)
        shutil.copy(key.with_name("after-cert.pub"), forged / "forged-cert.pub")
        (forged / "result.json").write_text(json.dumps(
            {"status": "issued", "ssh_ca": "user", "serial": 0, "name": "forged",
             "request_sha256": "00" * 32, "profile": "ssh-user"}))
        target = Path(tempfile.mkdtemp(prefix="ssh-r-")) / "ca"  # gpg's socket path limit
        try:
            done = subprocess.run(
                [str(Path(sys.executable).parent / "spoolca"), "restore",
                 str(archive), "--dir", str(target), "--fingerprint", fingerprint_of(sshca),
                 "--catch-up", str(copy)], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            assert "forged" in done.stdout
            restored = CA(target)
            listed = json.loads(restored.run("ssh", "list", "--ca", "user", "--json").stdout)
            assert [c["key_id"] for c in listed] == [sshca.result("after")["key_id"]]
            folder = restored.incoming / "ssh-user"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "again.json").write_text(json.dumps({"principals": ["alice"]}))
            shutil.copy(key.with_name("after.pub"), folder / "again.pub")
            restored.process()
            assert restored.result("again")["serial"] == sshca.result("after")["serial"]
        finally:
            stop_agent(target / "gnupg")
            shutil.rmtree(target.parent, ignore_errors=True)


def test_a_profile_that_requires_a_signature_takes_only_an_authorized_one(guarded: CA,
                                                                          signers, tmp_path):
    """require_signature on an SSH profile: the key and its request file signed
    (NAME.pub.asc) by Alice are certified and her fingerprint recorded; Mallory's
    signature (known, not authorized), none at all, and a request file changed after
    Alice signed are refused with their reasons."""
    with_ssh(guarded)
    guarded.config.write_text(guarded.config.read_text() + (
        '\n[ssh_profiles.ssh-ops]\ntype = "user"\nprincipals = ["alice", "bob"]\n'
        f'require_signature = true\nauthorized_signers = ["{signers["alice"].fingerprint}"]\n'))
    folder = guarded.incoming / "ssh-ops"
    folder.mkdir(parents=True)
    for name, signer in (("signed", "alice"), ("stranger", "mallory"), ("unsigned", None)):
        key = keypair(tmp_path, name)
        data, asked = key.with_name(f"{name}.pub").read_bytes(), b'{"principals": ["alice"]}'
        if signer:  # over the key and the request: `cat NAME.pub NAME.json | gpg ...`
            (folder / f"{name}.pub.asc").write_text(signers[signer].sign(data + asked))
        (folder / f"{name}.json").write_bytes(asked)
        (folder / f"{name}.pub").write_bytes(data)
    tampered = keypair(tmp_path, "tampered")  # signed for alice, the request file changed
    data = tampered.with_name("tampered.pub").read_bytes()
    (folder / "tampered.pub.asc").write_text(signers["alice"].sign(
        data + b'{"principals": ["alice"]}'))
    (folder / "tampered.json").write_text('{"principals": ["alice", "bob"]}')
    (folder / "tampered.pub").write_bytes(data)
    guarded.process()
    assert [r["code"] for r in guarded.result("tampered")["reasons"]] == [
        "request.signature_invalid"]
    assert guarded.result("signed")["status"] == "issued"
    events = json.loads(guarded.run("audit", "show", "--json", "--event", "ssh.issued").stdout)
    assert events[-1]["data"]["signer"] == signers["alice"].fingerprint
    assert [r["code"] for r in guarded.result("stranger")["reasons"]] == [
        "request.signer_not_authorized"]
    assert [r["code"] for r in guarded.result("unsigned")["reasons"]] == [
        "request.signature_missing"]


def test_status_show_and_the_report_tell_of_ssh_certificates(sshca: CA, tmp_path):
    key = keypair(tmp_path, "dave")
    request(sshca, "ssh-user", key, {"principals": ["alice"], "validity_days": 5})
    serial = sshca.result("dave")["serial"]
    shown = sshca.run("show", f"ssh:user:{serial}")
    assert shown.returncode == 0 and "valid" in shown.stdout and "alice" in shown.stdout
    assert sshca.run("show", "ssh:user:1").returncode == 1  # the counter-case: no such one
    status = sshca.run("status")
    assert "SSH certificates: user CA 1 valid, 0 revoked" in status.stdout
    listed = sshca.run("list", "--expiring", "10").stdout
    assert f"ssh:user:{serial}" in listed and "(alice)" in listed
    assert f"ssh:user:{serial}" not in sshca.run("list", "--expiring", "3").stdout
    assert f"ssh:user:{serial}" not in sshca.run("list", "--status", "revoked").stdout
    listed = json.loads(sshca.run("list", "--json").stdout)
    [ssh_entry] = [e for e in listed if e["serial"].startswith("ssh:")]
    assert ssh_entry["serial"] == f"ssh:user:{serial}" and ssh_entry["principals"] == ["alice"]
    assert set(ssh_entry) >= {"serial", "status", "subject", "issuer", "profile",
                              "not_before", "not_after", "revoked_at"}  # X.509's keys
    stick = tmp_path / "stick"
    stick.mkdir()
    assert sshca.run("media", "export", str(stick)).returncode == 0
    facts = json.loads((stick / "spoolca-results" / "report.json").read_text())
    [ending] = facts["ssh"]["ending"]
    assert ending["serial"] == serial and ending["days_left"] == 4
    assert "dave" in (stick / "spoolca-results" / "REPORT.html").read_text() or \
        ending["key_id"] in (stick / "spoolca-results" / "REPORT.html").read_text()


def test_the_daemon_answers_a_key_dropped_after_its_request_file(sshca: CA, tmp_path):
    """The order a stick's copy brings them (NAME.json, then NAME.pub): the request file
    waits for its key and goes with it; the daemon answers once."""
    from tests.daemon import NotifySocket, Running

    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        running = Running(sshca, notify)
        notify.wait_for("READY=1")
        folder = sshca.incoming / "ssh-user"
        folder.mkdir(parents=True, exist_ok=True)
        key = keypair(tmp_path, "erin")
        (folder / "erin.json").write_text('{"principals": ["alice"]}')
        shutil.copy(key.with_name("erin.pub"), folder / "erin.pub")
        result = sshca.outgoing / "erin" / "result.json"
        wait_for(result.exists, 30, "the daemon's answer")
        assert json.loads(result.read_text())["principals"] == ["alice"]
        assert running.stop() == 0
        assert not list(sshca.incoming.rglob("erin*"))
        assert sorted(p.name for p in sshca.archive.glob("erin*")) == ["erin.pub",
                                                                       "erin.pub.json"]
    finally:
        notify.close()


def test_a_signed_revocation_request_revokes_an_ssh_certificate(guarded: CA, signers,
                                                                tmp_path):
    """revoke/NAME.json naming ssh:user:SERIAL, signed by an authorized revoker: the
    certificate is revoked and on the KRL; the same named by Mallory is refused and
    revokes nothing (the counter-case)."""
    from tests.test_revocation_requests import drop

    guarded.edit_config("revokers = []", f'revokers = ["{signers["alice"].fingerprint}"]')
    with_ssh(guarded)
    keys = {name: keypair(tmp_path, name) for name in ("frank", "grace")}
    for key in keys.values():
        request(guarded, "ssh-user", key, {"principals": ["alice"]})
    serial = {name: guarded.result(name)["serial"] for name in keys}
    drop(guarded, "revoke/lost.json", {"serial": f"ssh:user:{serial['frank']}"},
         signers["alice"])
    drop(guarded, "revoke/forged.json", {"serial": f"ssh:user:{serial['grace']}"},
         signers["mallory"])
    guarded.process()
    assert guarded.result("lost")["status"] == "revoked"
    assert guarded.result("forged")["status"] == "rejected"
    krl = guarded.outgoing / "ssh" / "revoked-keys.krl"
    queried = subprocess.run(["ssh-keygen", "-Q", "-f", str(krl),
                              str(guarded.outgoing / "frank" / "frank-cert.pub"),
                              str(guarded.outgoing / "grace" / "grace-cert.pub")],
                             capture_output=True, text=True)
    assert "frank-cert.pub): REVOKED" in queried.stdout
    assert "grace-cert.pub): ok" in queried.stdout
