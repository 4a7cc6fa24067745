"""The register's views: list, show, export-index (byte for byte against openssl ca)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from spoolca.register.store import CertificateRecord
from spoolca.register.views import index_line, normalize_serial
from tests.pki import CA, make_csr, openssl, pem


@pytest.fixture
def issued(ca: CA) -> CA:
    ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
    ca.submit("client/alice.csr", pem(make_csr("alice@sample.com", sans=[])[1]))
    ca.process()
    return ca


OPENSSL_CNF = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
database = {dir}/index.txt
new_certs_dir = {dir}
certificate = {cert}
private_key = {key}
serial = {dir}/serial
default_md = sha384
policy = policy_anything
[ policy_anything ]
commonName = supplied
"""


class TestExportIndex:
    def test_matches_openssl_ca_byte_for_byte(self, issued: CA, tmp_path):
        """openssl ca -valid writes the same index.txt line as our export-index."""
        (tmp_path / "index.txt").write_text("")
        (tmp_path / "serial").write_text("01\n")
        cnf = tmp_path / "openssl.cnf"
        cnf.write_text(OPENSSL_CNF.format(
            dir=tmp_path, cert=issued.outgoing / "ca" / "intermediate.pem",
            key=issued.dir / "keys" / "intermediate.key.pem"))
        for name in ("www", "alice"):
            openssl("ca", "-config", str(cnf), "-valid",
                    str(issued.outgoing / name / "cert.pem"))
        ours = issued.run("export-index")
        assert ours.returncode == 0
        theirs = (tmp_path / "index.txt").read_text()
        assert sorted(ours.stdout.splitlines()) == sorted(theirs.splitlines())
        assert len(theirs.splitlines()) == 2

    def test_revoked_line_format(self):
        """A revoked entry: R, expiry, revocation time with ',reason', as openssl writes it."""
        record = CertificateRecord("0A1B", "intermediate", "x" * 64, "server", "/CN=a.b",
                                   "2026-01-01T00:00:00Z", "2027-01-06T00:00:00Z", b"",
                                   "2026-06-01T12:30:00Z", "keyCompromise")
        line = index_line(record, dt.datetime(2026, 7, 1, tzinfo=dt.UTC))
        assert line == "R\t270106000000Z\t260601123000Z,keyCompromise\t0A1B\tunknown\t/CN=a.b\n"

    def test_expired_and_post_2049_dates(self):
        """Expired entries are E (as after -updatedb); from 2050 the date is GeneralizedTime."""
        record = CertificateRecord("0A1B", "intermediate", "x" * 64, "server", "/CN=a.b",
                                   "2026-01-01T00:00:00Z", "2051-01-06T00:00:00Z", b"",
                                   None, None)
        assert index_line(record, dt.datetime(2052, 1, 1, tzinfo=dt.UTC)).startswith(
            "E\t20510106000000Z\t\t")


class TestList:
    def test_json_listing(self, issued: CA):
        """list --json has one object per certificate, with serial, status, subject, profile."""
        rows = json.loads(issued.run("list", "--json").stdout)
        assert {r["profile"] for r in rows} == {"server", "client"}
        assert all(r["status"] == "valid" for r in rows)
        assert {r["subject"] for r in rows} == {
            "/C=US/ST=New York/O=The Sample Company/CN=www.sample.com",
            "/C=US/ST=New York/O=The Sample Company/CN=alice@sample.com"}

    def test_status_and_expiring_filters(self, issued: CA):
        """--status revoked finds none; --expiring 400 finds both (375-day certificates)."""
        with sqlite3.connect(issued.dir / "ca.db") as db:
            db.execute("UPDATE certificates SET not_after = '2000-01-01T00:00:00Z' "
                       "WHERE profile = 'client'")
        assert json.loads(issued.run("list", "--json", "--status", "revoked").stdout) == []
        expired = json.loads(issued.run("list", "--json", "--status", "expired").stdout)
        assert [r["profile"] for r in expired] == ["client"]
        soon = json.loads(issued.run("list", "--json", "--expiring", "400").stdout)
        assert [r["profile"] for r in soon] == ["server"]
        assert json.loads(issued.run("list", "--json", "--expiring", "30").stdout) == []

    def test_expiring_is_read_by_index_after_an_upgrade(self, issued: CA):
        """A schema-2 register gains the index on open; `list --expiring` (and the stick
        report) then never reads the whole register."""
        import sqlite3

        from spoolca.register.store import Store

        database = issued.dir / "ca.db"
        with sqlite3.connect(database) as db:
            db.execute("DROP INDEX certificates_valid_not_after")
            db.execute("ALTER TABLE submissions DROP COLUMN again")  # schema 6's
            db.execute("DROP TABLE ssh_certificates")  # schema 7's
            db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        Store(database).close()
        with sqlite3.connect(database) as db:
            plan = " ".join(str(row) for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT serial FROM certificates WHERE revoked_at IS NULL "
                "AND not_after > '2026' AND not_after <= '2027' ORDER BY not_after"))
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                                 ).fetchone()[0]
        assert version == "7" and "certificates_valid_not_after" in plan, plan
        assert len(json.loads(issued.run("list", "--json", "--expiring", "400").stdout)) == 2

    def test_table(self, issued: CA):
        """The human table: a header, a row per certificate, then when each CRL is due."""
        lines = issued.run("list").stdout.splitlines()
        assert lines[0].startswith("SERIAL") and len(lines) == 5
        assert lines[3].startswith("root CRL #1 valid until")
        assert lines[4].startswith("intermediate CRL #1 valid until")


class TestShow:
    def test_show_by_serial_in_any_notation(self, issued: CA):
        """show accepts the serial with colons and lower case, and names the SANs."""
        serial = issued.result("www")["serial"]
        colons = ":".join(serial[i:i + 2] for i in range(0, len(serial), 2)).lower()
        result = issued.run("show", colons)
        assert result.returncode == 0
        assert f"Serial:          {serial}" in result.stdout
        assert "DNS:www.sample.com" in result.stdout
        assert "EC P-256" in result.stdout

    def test_unknown_serial(self, issued: CA):
        """Counter-case: an unknown serial is exit 1 and one sentence."""
        result = issued.run("show", "0BADC0DE")
        assert result.returncode == 1
        assert result.stderr.strip() == \
            "spoolca: no certificate with serial 0BADC0DE in the register"

    def test_malformed_serial(self, issued: CA):
        """A serial that is not hex is a usage error."""
        assert issued.run("show", "xyz").returncode == 2

    @pytest.mark.parametrize("text,expected", [("0a1b", "0A1B"), ("a:1b", "0A1B"),
                                               ("0x00A1B", "0A1B"), ("7", "07")])
    def test_normalize_serial(self, text, expected):
        """Serials are upper-case hex in whole octets, as index.txt writes them."""
        assert normalize_serial(text) == expected


class TestPolicyCheck:
    def test_accepted(self, ca: CA, tmp_path):
        """A good CSR: exit 0, and nothing is issued."""
        path = tmp_path / "good.csr"
        path.write_bytes(pem(make_csr("good.sample.com")[1]))
        result = ca.run("policy", "check", str(path))
        assert result.returncode == 0 and result.stdout.startswith("accepted")
        assert json.loads(ca.run("list", "--json").stdout) == []

    def test_rejected_lists_every_reason(self, ca: CA, tmp_path):
        """A bad CSR: exit 1 and each finding code on its own line."""
        path = tmp_path / "bad.csr"
        path.write_bytes(pem(make_csr("My Server", sans=[], company=False)[1]))
        result = ca.run("policy", "check", str(path))
        assert result.returncode == 1
        for code in ("policy.dn.countryName_missing", "policy.cn.not_a_hostname",
                     "policy.san.missing"):
            assert code in result.stdout

    def test_profile_option(self, ca: CA, tmp_path):
        """--profile client judges the same CSR as a client request."""
        path = tmp_path / "person.csr"
        path.write_bytes(pem(make_csr("Alice Example", sans=[])[1]))
        assert ca.run("policy", "check", str(path)).returncode == 1
        assert ca.run("policy", "check", str(path), "--profile", "client").returncode == 0
        assert ca.run("policy", "check", str(path), "--profile", "nope").returncode == 2


class TestOpening:
    def test_a_refused_register_is_closed_at_once(self, tmp_path):
        """A register that cannot be used (a half-made CA's: no schema) is refused in one
        sentence and closed then, not when the garbage collector gets to it: its -shm
        stayed mapped, and a file system holding it could not be unmounted."""
        from spoolca.errors import SpoolcaError
        from spoolca.register.store import Store

        database = tmp_path / "ca.db"
        made = sqlite3.connect(database)
        made.execute("PRAGMA journal_mode = WAL")
        made.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        made.commit()
        made.close()
        with pytest.raises(SpoolcaError, match="has schema None"):
            Store(database)
        with open("/proc/self/maps") as maps:
            assert str(tmp_path) not in maps.read()
