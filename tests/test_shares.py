"""M-of-N custody of the unlock secret with real SLIP-39 shares (shamir-mnemonic): split
to one file per custodian off the appliance, any K recover it, fewer or foreign shares
never do, and what `combine` installs unlocks the real CA keys."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.pki import CA, init_ca, make_csr, pem, spoolca
from tests.templates import Templates

SECRET = b"correct horse battery staple, twice"
PEOPLE = ["alice", "bob", "carol", "dave", "erin"]


@pytest.fixture
def guarded_ca(tmp_path: Path, templates: Templates) -> CA:
    return templates.encrypted(tmp_path, SECRET, secret_name="pw")


def split(ca: CA, out: Path, scheme: str = "3-of-5", people=PEOPLE):
    custodians = [a for name in people for a in ("--custodian", name)]
    return ca.run("shares", "split", scheme, *custodians, "--out", str(out))


def shares(out: Path, *names: str) -> list[str]:
    return [str(out / f"{name}.share.txt") for name in names]


class TestShares:
    def test_split_writes_one_file_per_custodian_and_never_the_secret(self, guarded_ca: CA,
                                                                     tmp_path: Path):
        out = tmp_path / "sticks"
        done = split(guarded_ca, out)
        assert done.returncode == 0, done.stderr
        files = sorted(os.listdir(out))
        assert files == [f"{p}.share.txt" for p in PEOPLE]
        for name in files:
            assert (out / name).stat().st_mode & 0o777 == 0o400
            assert SECRET not in (out / name).read_bytes()
        entry = json.loads(guarded_ca.run("audit", "show", "--json", "--event",
                                          "shares.issued").stdout)[-1]["data"]
        assert entry["threshold"] == 3 and entry["custodians"] == PEOPLE
        assert "3-of-5" in json.loads(guarded_ca.run("status", "--json").stdout
                                      )["custody"]["shares"]
        inside = split(guarded_ca, guarded_ca.dir / "shares")
        assert inside.returncode == 2 and "never kept on the appliance" in inside.stderr

    def test_any_three_recover_and_unlock_the_real_keys(self, guarded_ca: CA, tmp_path: Path):
        out = tmp_path / "sticks"
        assert split(guarded_ca, out).returncode == 0
        installed = tmp_path / "installed"
        done = guarded_ca.run("shares", "combine", *shares(out, "erin", "bob", "dave"),
                              "--install", str(installed))
        assert done.returncode == 0, done.stderr
        assert installed.read_bytes() == SECRET and SECRET.decode() not in done.stdout
        (tmp_path / "pw").unlink()  # the service now reads only what the shares gave
        guarded_ca.edit_config(f'file = "{tmp_path / "pw"}"', f'file = "{installed}"')
        guarded_ca.submit("server/s.csr", pem(make_csr("s.sample.com")[1]))
        guarded_ca.process()
        assert guarded_ca.result("s")["status"] == "issued"

    def test_too_few_mixed_or_foreign_shares_never_recover(self, guarded_ca: CA,
                                                           tmp_path: Path):
        out, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
        assert split(guarded_ca, out).returncode == 0
        two = guarded_ca.run("shares", "check", *shares(out, "alice", "bob"))
        assert two.returncode == 1 and "do not combine" in two.stderr
        assert split(guarded_ca, again).returncode == 0  # a second set of the same secret
        mixed = guarded_ca.run("shares", "check", *shares(out, "alice", "bob"),
                               *shares(again, "carol"))
        assert mixed.returncode == 1
        (tmp_path / "pw2").write_bytes(b"another CA's secret entirely")
        stranger = init_ca(tmp_path / "other", "--passphrase-file", str(tmp_path / "pw2"))
        assert split(stranger, other).returncode == 0
        foreign = guarded_ca.run("shares", "check", *shares(other, "alice", "bob", "carol"))
        assert foreign.returncode == 2 and "not this appliance's current one" in foreign.stderr
        typed = spoolca("--config", str(guarded_ca.config), "shares", "check", stdin="\n".join(
            (out / f"{p}.share.txt").read_text().splitlines()[-1] for p in PEOPLE[:3]
        ).encode())
        assert typed.returncode == 0, typed.stderr

    def test_init_splits_at_the_ceremony(self, tmp_path: Path):
        """init --shares 2-of-3: the CA and the custodians' files in one step; refused
        before anything is made when the shares would land in the state directory."""
        secret = tmp_path / "pw"
        secret.write_bytes(SECRET)
        people = [a for p in ("ann", "ben", "cid") for a in ("--custodian", p)]
        refused = spoolca("init", "--dir", str(tmp_path / "x"), "--passphrase-file",
                          str(secret), "--shares", "2-of-3", *people, "--shares-out",
                          str(tmp_path / "x" / "shares"))
        assert refused.returncode == 2 and not (tmp_path / "x").exists()
        ca = init_ca(tmp_path / "ca", "--passphrase-file", str(secret), "--shares", "2-of-3",
                     *people, "--shares-out", str(tmp_path / "out"))
        assert sorted(os.listdir(tmp_path / "out")) == ["ann.share.txt", "ben.share.txt",
                                                          "cid.share.txt"]
        assert ca.run("shares", "check", *shares(tmp_path / "out", "cid", "ann")
                      ).returncode == 0

    def test_reshare_makes_a_new_set_for_new_custodians(self, guarded_ca: CA, tmp_path: Path):
        out, new = tmp_path / "old", tmp_path / "new"
        assert split(guarded_ca, out).returncode == 0
        done = guarded_ca.run("shares", "reshare", "2-of-3", "--custodian", "frank",
                              "--custodian", "grace", "--custodian", "heidi", "--out", str(new),
                              *(a for f in shares(out, "alice", "carol", "erin")
                                for a in ("--old", f)))
        assert done.returncode == 0, done.stderr
        assert guarded_ca.run("shares", "check", *shares(new, "grace", "heidi")
                              ).returncode == 0
        assert "3-of-5" not in json.loads(guarded_ca.run("status", "--json").stdout
                                          )["custody"]["shares"]


class TestRotate:
    def test_rotate_voids_the_old_shares_and_the_keys_open_with_the_new(
            self, guarded_ca: CA, tmp_path: Path):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        out, new = tmp_path / "old", tmp_path / "new"
        assert split(guarded_ca, out).returncode == 0
        staged = tmp_path / "pw.next"  # as an interrupted rotation leaves it: finished now
        staged.write_bytes(b"the secret an interrupted rotation chose")
        done = guarded_ca.run("shares", "rotate", "2-of-3", "--custodian", "x", "--custodian",
                              "y", "--custodian", "z", "--out", str(new), "--install",
                              str(tmp_path / "pw"),
                              *(a for f in shares(out, "alice", "bob", "carol")
                                for a in ("--old", f)))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "pw").read_bytes() == b"the secret an interrupted rotation chose"
        assert not staged.exists()
        key = (guarded_ca.dir / "keys" / "root.key.pem").read_bytes()
        with pytest.raises(ValueError):
            load_pem_private_key(key, SECRET)
        load_pem_private_key(key, (tmp_path / "pw").read_bytes())
        old = guarded_ca.run("shares", "check", *shares(out, "alice", "bob", "carol"))
        assert old.returncode == 2 and "not this appliance's current one" in old.stderr
        assert guarded_ca.run("shares", "check", *shares(new, "x", "z")).returncode == 0
        guarded_ca.submit("server/r.csr", pem(make_csr("r.sample.com")[1]))
        guarded_ca.process()  # the CA key and the audit key (gpg) open with the new secret
        assert guarded_ca.result("r")["status"] == "issued"
        assert guarded_ca.run("audit", "export").returncode == 0
