"""CA keys in a PKCS#11 token: a real SoftHSM2 token per test, the real `spoolca` command
line, and every token signature judged by openssl, GnuTLS certtool and pkilint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spoolca.keys.openpgp import stop_agent
from spoolca.keys.softhsm import make_token, softhsm_module
from tests.daemon import NotifySocket, Running
from tests.pki import (
    CA,
    CREATED,
    ROOT_SUBJECT,
    copy_ca,
    init_ca,
    make_csr,
    openssl,
    pem,
    spoolca,
    wait_for,
)

pytestmark = pytest.mark.skipif(shutil.which("softhsm2-util") is None,
                                reason="SoftHSM2 is not installed (.ci/run installs it)")

PIN = b"token user pin 1"
CRL_DIR = ("spool", "outgoing", "crl")


_MADE: dict[str, Path] = {}  # the session's token CA (token_ca with the defaults)


@pytest.fixture(scope="session")
def _token_template(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A token CA made once per test process by the real `spoolca init`, its token and CA
    directory copied by token_ca for each test that takes the defaults: the token's key
    generation and the audit key are not what those tests check."""
    place = tmp_path_factory.mktemp("token-template")
    (place / "pin").write_bytes(PIN)
    with pytest.MonkeyPatch.context() as env:  # init sees the template's token only
        env.setenv("SOFTHSM2_CONF", str(make_token(place / "hsm", "spoolca", PIN)))
        _init_token_ca(place)
    CREATED.remove(place / "ca")
    stop_agent(place / "ca" / "gnupg")  # the copies start their own
    _MADE["template"] = place


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _token_template: None) -> Path:
    """A fresh SoftHSM2 token labelled 'spoolca'; every spoolca run here sees only it."""
    conf = make_token(tmp_path / "hsm", "spoolca", PIN)
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    (tmp_path / "pin").write_bytes(PIN)
    return conf


def _init_token_ca(place: Path, *extra: str) -> CA:
    return init_ca(place / "ca", "--key-store", "pkcs11", "--pkcs11-module",
                   str(softhsm_module()), "--token", "spoolca", "--passphrase-file",
                   str(place / "pin"), *extra)


def token_ca(tmp_path: Path, *extra: str) -> CA:
    """A CA whose keys are in the test's token: made by `spoolca init` when EXTRA asks
    for something of its own, else a copy of the session's (the token's objects too)."""
    if extra:
        return _init_token_ca(tmp_path, *extra)
    template = _MADE["template"]
    tokens = tmp_path / "hsm" / "tokens"
    shutil.rmtree(tokens)
    shutil.copytree(template / "hsm" / "tokens", tokens)
    ca = copy_ca(template / "ca", tmp_path / "ca")
    ca.edit_config(f'file = "{template / "pin"}"', f'file = "{tmp_path / "pin"}"')
    return ca


def token_objects() -> list[dict]:
    """What the token holds, read by python-pkcs11 in a child (never this test process's
    login, which would collide with the CA's)."""
    code = (
        "import json, pkcs11, sys\n"
        "from pkcs11 import Attribute as A, ObjectClass as C\n"
        f"lib = pkcs11.lib({str(softhsm_module())!r})\n"
        f"with lib.get_token(token_label='spoolca').open(user_pin={PIN.decode()!r}) as s:\n"
        "    print(json.dumps([{'label': o[A.LABEL], 'sensitive': o[A.SENSITIVE],\n"
        "        'extractable': o[A.EXTRACTABLE], 'never_extractable': o[A.NEVER_EXTRACTABLE]}\n"
        "        for o in s.get_objects({A.CLASS: C.PRIVATE_KEY})]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout)


def issue(ca: CA, name: str) -> Path:
    ca.submit(f"server/{name}.csr", pem(make_csr(f"{name}.sample.com")[1]))
    ca.process()
    assert ca.result(name)["status"] == "issued", ca.result(name)
    return ca.outgoing / name / "cert.pem"


def judged(ca: CA, cert: Path) -> None:
    """openssl with both CRLs checked, certtool on the chain, pkilint on cert and CRLs."""
    crls = ca.dir.joinpath(*CRL_DIR)
    bundle = ca.dir / "bundle.pem"
    bundle.write_bytes((ca.outgoing / "ca" / "ca-chain.pem").read_bytes() + b"".join(
        openssl("crl", "-in", str(crls / f"{n}.crl"), "-inform", "DER").stdout.encode()
        for n in ("root", "intermediate")))
    verified = openssl("verify", "-crl_check_all", "-CAfile", str(bundle), str(cert))
    assert verified.stdout.strip().endswith(": OK")
    for name in ("root", "intermediate"):
        signed = openssl("crl", "-in", str(crls / f"{name}.crl"), "-inform", "DER",
                         "-CAfile", str(ca.outgoing / "ca" / f"{name}.pem"), "-noout")
        assert "verify OK" in signed.stderr + signed.stdout
    chain = ca.dir / "full.pem"
    chain.write_bytes(cert.read_bytes() + (ca.outgoing / "ca" / "intermediate.pem").read_bytes())
    gnutls = subprocess.run(["certtool", "--verify", "--load-ca-certificate",
                             str(ca.outgoing / "ca" / "root.pem"), "--infile", str(chain)],
                            capture_output=True, text=True, timeout=60)
    assert gnutls.returncode == 0 and "Chain verification output: Verified" in gnutls.stdout
    bin_dir = os.path.dirname(sys.executable)
    findings = subprocess.run([f"{bin_dir}/lint_pkix_cert", "lint", "-s", "WARNING", str(cert)],
                              capture_output=True, text=True, timeout=60).stdout
    assert [line for line in findings.splitlines() if "(" in line] == []
    for name in ("root", "intermediate"):
        findings = subprocess.run([f"{bin_dir}/lint_crl", "lint", "-t", "CRL", "-p", "PKIX",
                                   "-s", "WARNING", str(crls / f"{name}.crl")],
                                  capture_output=True, text=True, timeout=60).stdout
        assert [line for line in findings.splitlines() if "(" in line] == []


def audit_events(ca: CA) -> list[dict]:
    shown = ca.run("audit", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


@pytest.mark.usefixtures("token")
class TestTokenKeys:
    @pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-3072"])
    def test_both_keys_live_in_the_token_and_sign_everything(self, tmp_path: Path,
                                                            key_type: str):
        ca = token_ca(tmp_path, "--key-type", key_type)
        assert list((ca.dir / "keys").iterdir()) == []  # no key file at all
        held = {o["label"]: o for o in token_objects()}
        assert set(held) == {"spoolca-root", "spoolca-intermediate"}
        assert all(o["sensitive"] and not o["extractable"] and o["never_extractable"]
                   for o in held.values())
        cert = issue(ca, "www")
        assert ca.run("revoke", ca.result("www")["serial"], "--reason",
                      "superseded").returncode == 0
        assert ca.run("crl").returncode == 0  # both CRLs, remade by the token's keys
        judged(ca, issue(ca, "www2"))
        refused = openssl("verify", "-crl_check_all", "-CAfile", str(ca.dir / "bundle.pem"),
                          str(cert), check=False)
        assert "certificate revoked" in refused.stdout + refused.stderr

    def test_the_log_names_the_token_and_label_that_signed(self, tmp_path: Path):
        ca = token_ca(tmp_path)
        issue(ca, "www")
        events = audit_events(ca)
        made = next(e for e in events if e["event"] == "ca.initialized")["data"]
        assert made["root"]["key_store"]["uri"] == "pkcs11:token=spoolca;object=spoolca-root"
        assert made["intermediate"]["key_store"]["label"] == "spoolca-intermediate"
        unlocked = [e["data"] for e in events if e["event"] == "key.unlocked"
                    and "authorities" in e["data"]]
        assert {"key_store": "pkcs11", "token": "spoolca", "label": "spoolca-intermediate"
                }.items() <= unlocked[-1]["key_store"].items()
        record = next((ca.dir / "ceremony").glob("*-init.txt")).read_text()
        assert "pkcs11:token=spoolca;object=spoolca-root" in record
        status = json.loads(ca.run("status", "--json").stdout)["custody"]
        assert status["key_store"] == "pkcs11"
        assert "PKCS#11 token 'spoolca' as 'spoolca-root'" in status["keys"]["root"]

    def test_mixed_stores_root_in_the_token_intermediate_in_a_file(self, tmp_path: Path):
        ca = token_ca(tmp_path, "--intermediate-key-store", "file")
        assert [p.name for p in (ca.dir / "keys").iterdir()] == ["intermediate.key.pem"]
        assert {o["label"] for o in token_objects()} == {"spoolca-root"}
        assert ca.run("crl").returncode == 0
        judged(ca, issue(ca, "www"))

    def test_rotate_changes_the_pin_and_voids_the_old_shares(self, tmp_path: Path):
        """The PIN is the unlock secret: `shares rotate` changes it in the token (C_SetPIN),
        so the old PIN and the old shares open nothing, and the new secret issues."""
        ca = token_ca(tmp_path)
        old, new = tmp_path / "old", tmp_path / "new"
        people = [a for name in ("a", "b", "c") for a in ("--custodian", name)]
        assert ca.run("shares", "split", "2-of-3", *people, "--out", str(old)).returncode == 0
        rotated = ca.run("shares", "rotate", "2-of-3", *people, "--out", str(new),
                         "--install", str(tmp_path / "pin"),
                         "--old", str(old / "a.share.txt"), "--old", str(old / "b.share.txt"))
        assert rotated.returncode == 0, rotated.stderr
        assert (tmp_path / "pin").read_bytes() != PIN
        with pytest.raises(subprocess.CalledProcessError):
            token_objects()  # logs in with the old PIN
        stale = ca.run("shares", "check", str(old / "a.share.txt"), str(old / "c.share.txt"))
        assert stale.returncode == 2
        assert ca.run("shares", "check", str(new / "b.share.txt"),
                      str(new / "c.share.txt")).returncode == 0
        issue(ca, "after")

    def test_rekey_makes_the_new_generation_in_the_token(self, tmp_path: Path):
        """Both keys in the token: the new intermediate key is made there too (labelled
        -g2), no key file appears, and each generation's leaves and CRL verify."""
        ca = token_ca(tmp_path)
        old = issue(ca, "old")
        done = ca.run("ca", "rekey", "intermediate")
        assert done.returncode == 0, done.stderr
        held = {o["label"]: o for o in token_objects()}
        assert set(held) == {"spoolca-root", "spoolca-intermediate", "spoolca-intermediate-g2"}
        assert not held["spoolca-intermediate-g2"]["extractable"]
        assert list((ca.dir / "keys").iterdir()) == []
        new = issue(ca, "new")
        for cert, chain in ((old, ca.outgoing / "old" / "chain.pem"),
                            (new, ca.outgoing / "ca" / "ca-chain.pem")):
            openssl("verify", "-CAfile", str(chain), str(cert))
        assert ca.run("revoke", ca.result("old")["serial"]).returncode == 0
        checked = openssl("crl", "-in", str(ca.outgoing / "crl" / "intermediate.crl"),
                          "-inform", "DER", "-noout", "-CAfile",
                          str(ca.outgoing / "ca" / "intermediate-g1.pem"))
        assert "verify OK" in checked.stdout + checked.stderr

    def test_a_ceremony_file_with_a_token_is_rehearsed_on_a_throwaway_token(
            self, tmp_path: Path):
        """--rehearse never opens the real token: the fixture's stays empty, the rehearsal
        CA's keys are in a SoftHSM2 token of its own and it issues with them."""
        ceremony = tmp_path / "ceremony.toml"
        ceremony.write_text(
            f'[ca]\ndir = "{tmp_path / "real"}"\nroot_subject = "{ROOT_SUBJECT}"\n'
            f'key_type = "ec-p256"\nkey_store = "pkcs11"\npassphrase_file = '
            f'"{tmp_path / "pin"}"\n[pkcs11]\nmodule = "/nonexistent/real-hsm.so"\n'
            'token = "spoolca"\n')
        done = spoolca("init", "--ceremony", str(ceremony), "--rehearse")
        assert done.returncode == 0, done.stderr
        place = Path(re.search(r"REHEARSAL: throwaway keys in (\S+);", done.stdout).group(1))
        CREATED.append(place)
        conf = re.search(r"SOFTHSM2_CONF=(\S+)", done.stdout).group(1)
        assert token_objects() == [] and not (tmp_path / "real").exists()
        rehearsal = CA(place)
        rehearsal.submit("server/r.csr", pem(make_csr("r.sample.com")[1]))
        ran = rehearsal.run("process", env={"SOFTHSM2_CONF": conf})
        assert ran.returncode == 0, ran.stderr
        assert rehearsal.result("r")["status"] == "issued"
        assert "REHEARSAL" in next((place / "ceremony").glob("*-init-rehearsal.txt")
                                   ).read_text()
        shutil.rmtree(place.parent)


@pytest.mark.usefixtures("token")
class TestTokenRefusals:
    """A token that is missing, refuses the PIN, or holds the wrong key: one sentence,
    nothing issued, the request kept in incoming/."""

    def refused(self, ca: CA, sentence: str, env: dict[str, str] | None = None) -> None:
        ca.submit("server/wait.csr", pem(make_csr("wait.sample.com")[1]))
        ran = ca.run("process", env=env)
        assert ran.returncode != 0
        assert sentence in ran.stderr and "Traceback" not in ran.stderr
        assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
        assert (ca.incoming / "server" / "wait.csr").exists()
        assert not (ca.outgoing / "wait").exists()

    def test_wrong_pin(self, tmp_path: Path):
        ca = token_ca(tmp_path)
        (tmp_path / "pin").write_bytes(b"not the pin at all")
        self.refused(ca, "refused the PIN")

    def test_token_not_present(self, tmp_path: Path):
        ca = token_ca(tmp_path)
        elsewhere = make_token(tmp_path / "other-hsm", "another", PIN)
        self.refused(ca, "the token 'spoolca'", env={"SOFTHSM2_CONF": str(elsewhere)})
        ran = ca.run("process", env={"SOFTHSM2_CONF": str(elsewhere)})
        assert "is not present" in ran.stderr

    def test_wrong_key_in_the_token(self, tmp_path: Path):
        ca = token_ca(tmp_path)
        ca.edit_config('key_label = "spoolca-intermediate"', 'key_label = "spoolca-root"')
        self.refused(ca, "does not belong to the intermediate CA certificate")

    def test_no_such_key_label(self, tmp_path: Path):
        ca = token_ca(tmp_path)
        ca.edit_config('key_label = "spoolca-intermediate"', 'key_label = "gone"')
        self.refused(ca, "holds no private key labelled 'gone'")

    def test_module_missing(self, tmp_path: Path):
        ca = token_ca(tmp_path)
        ca.edit_config(f'module = "{softhsm_module()}"', 'module = "/nonexistent/pkcs11.so"')
        self.refused(ca, "failed to load the PKCS#11 module /nonexistent/pkcs11.so")

    def test_init_refuses_a_taken_label_and_an_ed25519_token_key(self, tmp_path: Path):
        token_ca(tmp_path)
        again = spoolca("init", "--dir", str(tmp_path / "again"), "--key-store", "pkcs11",
                        "--pkcs11-module", str(softhsm_module()), "--token", "spoolca",
                        "--passphrase-file", str(tmp_path / "pin"))
        assert again.returncode != 0 and "already holds an object labelled 'spoolca-root'" \
            in again.stderr
        assert not (tmp_path / "again").exists()
        ed = spoolca("init", "--dir", str(tmp_path / "ed"), "--key-store", "pkcs11",
                     "--pkcs11-module", str(softhsm_module()), "--token", "spoolca",
                     "--key-label", "ed", "--key-type", "ed25519",
                     "--passphrase-file", str(tmp_path / "pin"))
        assert ed.returncode != 0 and "cannot be made in a token" in ed.stderr
        assert not (tmp_path / "ed").exists()

    def test_the_daemon_says_why_in_status_and_issues_once_the_token_is_back(
            self, tmp_path: Path, token: Path):
        """The token is not there when the daemon starts: it comes up anyway, STATUS= says
        why, the request waits; the token comes back and the request is issued, with no
        restart (the module is re-initialised to see it)."""
        ca = token_ca(tmp_path)
        tokens, away = token.parent / "tokens", token.parent / "away"
        tokens.rename(away)
        tokens.mkdir()
        notify = NotifySocket(tmp_path / "notify.sock")
        running = Running(ca, notify)
        try:
            notify.wait_for("READY=1")
            ca.submit("server/wait.csr", pem(make_csr("wait.sample.com")[1]))
            wait_for(lambda: any(m.startswith("STATUS=REFUSING TO ISSUE: the token 'spoolca'")
                                 and "is not present" in m for m in notify.poll()), 20,
                     "a STATUS naming the missing token")
            assert (ca.incoming / "server" / "wait.csr").exists()
            assert not (ca.outgoing / "wait").exists()
            tokens.rmdir()
            away.rename(tokens)  # plugged back in
            wait_for((ca.outgoing / "wait" / "result.json").exists, 60, "the result")
            assert ca.result("wait")["status"] == "issued"
        finally:
            running.stop()
            notify.close()

def test_every_token_refusal_has_its_own_sentence():
    """SoftHSM2 never locks a token, so the sentences of the states it cannot reach are
    checked against the binding's own exception types."""
    import pkcs11.exceptions as e

    from spoolca.keys.token import TokenKey, _sentence

    where = TokenKey(Path("/lib/hsm.so"), "ca", "spoolca-root")
    said = {kind: _sentence(kind(), where) for kind in (
        e.PinLocked, e.PinIncorrect, e.NoSuchToken, e.TokenNotPresent, e.DeviceRemoved,
        e.NoSuchKey, e.PinExpired, e.UserPinNotInitialized, e.MultipleObjectsReturned)}
    assert "locked after too many wrong PINs" in said[e.PinLocked]
    assert "was removed" in said[e.DeviceRemoved]
    assert len(set(said.values())) == len(said)  # each its own
    assert all(s.startswith("the token 'ca' (/lib/hsm.so)") for s in said.values())
    assert "failed: GeneralError" in _sentence(e.GeneralError(), where)


@pytest.mark.usefixtures("token")
def test_ssh_cas_in_the_token_sign_certificates_sshd_accepts(tmp_path: Path):
    """[ssh] key_store = "pkcs11": `ssh init` makes both SSH CA keys in the token (never
    extractable), the certificates it signs there verify (cryptography, ssh-keygen) and
    a real sshd lets one in; Ed25519 in a token is refused (the counter-case)."""
    from tests.test_ssh import SSHD, Sshd, issued, keypair, request

    ca = token_ca(tmp_path)
    ca.edit_config('# [ssh]\n# user_key = "keys/ssh-user-ca.key.pem"\n'
                   '# host_key = "keys/ssh-host-ca.key.pem"', '[ssh]\nkey_store = "pkcs11"')
    ca.config.write_text(ca.config.read_text() + '\n[ssh_profiles.ssh-user]\ntype = "user"\n'
                         'principals = ["root"]\n')
    refused = ca.run("ssh", "init")  # Ed25519, the default: not in a token
    assert refused.returncode == 1 and "ecdsa-p256 or ecdsa-p384" in refused.stderr
    made = ca.run("ssh", "init", "--key-type", "ecdsa-p384")
    assert made.returncode == 0, made.stderr
    labels = {o["label"]: o for o in token_objects()}
    for label in ("spoolca-ssh-user", "spoolca-ssh-host"):
        assert labels[label]["sensitive"] and not labels[label]["extractable"]
    assert not list((ca.dir / "keys").glob("ssh-*"))
    key = keypair(tmp_path, "operator")
    cert = issued(ca, request(ca, "ssh-user", key, {"principals": ["root"]}), key)
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(cert)], capture_output=True,
                           text=True, check=True).stdout
    assert "using ecdsa-sha2-nistp384" in shown
    unlocked = [e["data"] for e in audit_events(ca) if e["event"] == "key.unlocked"
                and e["data"].get("ssh_ca")]
    assert unlocked and unlocked[-1]["key_store"] == "pkcs11"
    if os.path.exists(SSHD):
        sshd = Sshd(tmp_path, ca, keypair(tmp_path, "hostkey"), None)
        try:
            done = sshd.login(key)
            assert done.returncode == 0 and "logged-in" in done.stdout, done.stderr
        finally:
            sshd.stop()
