"""The pipeline in-process, with an injected clock: the clock guard and the audit chain."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from spoolca.config import load_config
from spoolca.errors import ClockError
from spoolca.process.batch import BatchProcessor
from spoolca.process.passes import run_pass
from spoolca.process.session import CASession
from spoolca.register.chain import GENESIS, entry_hash
from spoolca.register.store import Store
from spoolca.x509.csr import load_request
from tests.pki import CA, make_csr, pem
from tests.test_audit import verify


def run(ca: CA, now: dt.datetime):
    store = Store(load_config(ca.config).database)
    try:
        with CASession(load_config(ca.config), store, clock=lambda: now) as session:
            return run_pass(BatchProcessor(session))
    finally:
        store.close()


def confirm_clock(ca: CA, moment: dt.datetime) -> None:
    """What `spoolca clock confirm` records: the operator vouched for MOMENT."""
    store = Store(load_config(ca.config).database)
    try:
        with store.transaction("cli", moment, trust_clock=True) as tx:
            tx.record("clock.confirmed", {"clock": moment.isoformat()})
    finally:
        store.close()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TestClockGuard:
    def test_clock_set_back_refuses_to_issue_and_keeps_requests(self, ca: CA):
        """Invariant 8: earlier than the latest issuance, nothing is issued or moved."""
        ca.submit("server/a.csr", pem(make_csr("a.sample.com")[1]))
        moment = now()
        assert run(ca, moment).issued == 1
        ca.submit("server/b.csr", pem(make_csr("b.sample.com")[1]))
        with pytest.raises(ClockError, match=r"earlier than .*, the latest time the register"):
            run(ca, moment - dt.timedelta(hours=1))
        assert os.listdir(ca.incoming / "server") == ["b.csr"]
        assert run(ca, moment + dt.timedelta(seconds=1)).issued == 1

    def test_clock_before_the_ca_existed(self, ca: CA):
        """A clock before init (a dead RTC battery) is behind the register: refused."""
        ca.submit("server/a.csr", pem(make_csr("a.sample.com")[1]))
        with pytest.raises(ClockError, match="earlier than"):
            run(ca, dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
        assert os.listdir(ca.incoming / "server") == ["a.csr"]

    def test_clock_after_the_ca_expired(self, ca: CA):
        """A clock past the intermediate's notAfter refuses to issue: first as a clock
        far ahead of the register, then, once an operator confirmed it, as outside the
        CA's validity."""
        ca.submit("server/a.csr", pem(make_csr("a.sample.com")[1]))
        moment = dt.datetime(2199, 1, 1, tzinfo=dt.UTC)
        with pytest.raises(ClockError, match="more than 7 days after"):
            run(ca, moment)
        confirm_clock(ca, moment)
        with pytest.raises(ClockError, match="outside the intermediate CA's validity"):
            run(ca, moment)
        assert os.listdir(ca.incoming / "server") == ["a.csr"]

    def test_validity_is_capped_by_the_issuing_ca(self, ca: CA):
        """Near the intermediate's end, a certificate ends with it, not after."""
        import sqlite3

        from cryptography import x509

        with sqlite3.connect(ca.dir / "ca.db") as db:
            der = db.execute("SELECT cert_der FROM authorities WHERE name = 'intermediate'"
                             ).fetchone()[0]
        end = x509.load_der_x509_certificate(der).not_valid_after_utc
        ca.submit("server/late.csr", pem(make_csr("late.sample.com")[1]))
        confirm_clock(ca, end - dt.timedelta(days=10))
        run(ca, end - dt.timedelta(days=10))
        assert ca.result("late")["not_after"] == end.strftime("%Y-%m-%dT%H:%M:%SZ")


class TestAuditChain:
    def test_every_state_change_is_chained(self, ca: CA):
        """init, key unlock, issue and reject entries form one unbroken hash chain."""
        ca.submit("server/good.csr", pem(make_csr("good.sample.com")[1]))
        ca.submit("server/bad.csr", b"garbage")
        run(ca, now())
        store = Store(load_config(ca.config).database)
        entries = list(store.audit_entries())
        store.close()
        events = [e[2] for e in entries]
        assert events[0] == "ca.initialized"
        assert "key.unlocked" in events
        assert events.count("request.issued") == 1 and events.count("request.rejected") == 1
        previous = GENESIS
        for seq, time, event, actor, data, prev, digest in entries:
            assert prev == previous
            assert digest == entry_hash(seq, time, event, actor, json.loads(data), prev)
            previous = digest

    def test_an_entry_edited_in_the_register_breaks_the_chain(self, ca: CA):
        """Counter-case: a serial changed in ca.db itself is found by recomputing the chain."""
        import sqlite3

        ca.submit("server/good.csr", pem(make_csr("good.sample.com")[1]))
        run(ca, now())
        with sqlite3.connect(ca.dir / "ca.db") as db:
            db.execute("UPDATE audit SET data = replace(data, '\"serial\":\"', "
                       "'\"serial\":\"00') WHERE event = 'request.issued'")
        store = Store(load_config(ca.config).database)
        entries = list(store.audit_entries())
        store.close()
        broken = [seq for seq, time, event, actor, data, prev, digest in entries
                  if entry_hash(seq, time, event, actor, json.loads(data), prev) != digest]
        assert [entries[s - 1][2] for s in broken] == ["request.issued"]


class TestSealedBehind:
    def test_no_batch_commits_behind_an_unsigned_checkpoint(self, ca: CA):
        """A batch's checkpoint is signed while the next batch is decided and stored in its
        transaction. If it cannot be signed (the audit key's secret gone), the next batch
        rolls back whole, its file waits in work/, and it is issued once signing works."""
        from spoolca.keys.openpgp import AuditSignatureError, stop_agent

        ca.submit("server/a.csr", pem(make_csr("a.sample.com")[1]))
        ca.submit("server/b.csr", pem(make_csr("b.sample.com")[1]))
        config = load_config(ca.config)
        home, store = ca.dir / "gnupg", Store(config.database)
        secrets, hidden = home / "private-keys-v1.d", ca.dir / "hidden-keys"
        try:
            with CASession(config, store) as session:
                batch = BatchProcessor(session)
                session.require_audit_trail()  # what came before is signed
                first, second = session.spool.claim_incoming(config.default_profile)
                secrets.rename(hidden)
                stop_agent(home)
                assert batch.process_batch([first])[0].status == "issued"
                with pytest.raises(AuditSignatureError):
                    batch.process_batch([second])
                assert store.submissions_for(
                    identity(second.path)) == []  # rolled back: not recorded
                assert second.path.exists()
                hidden.rename(secrets)
                assert batch.process_batch([second])[0].status == "issued"
        finally:
            if hidden.exists():
                hidden.rename(secrets)
            store.close()
        audit = verify(ca, ca.outgoing / "audit")  # every batch signed and exported
        assert audit.returncode == 0, audit.stdout + audit.stderr


class TestLoggedOnceCommitted:
    def test_a_batch_rolled_back_logs_no_outcome(self, ca: CA):
        """A request's `request` log line is written once its batch committed: a batch
        rolled back (its predecessor's checkpoint could not be signed) logged `issued`
        for a request that was not. It is logged when it is issued, once."""
        import io

        from spoolca.keys.openpgp import AuditSignatureError, stop_agent
        from spoolca.log import configure_logging

        ca.submit("server/a.csr", pem(make_csr("a.sample.com")[1]))
        ca.submit("server/b.csr", pem(make_csr("b.sample.com")[1]))
        config = load_config(ca.config)
        home, store = ca.dir / "gnupg", Store(config.database)
        secrets, hidden = home / "private-keys-v1.d", ca.dir / "hidden-keys"
        lines = io.StringIO()
        configure_logging(lines)

        def logged(file: str) -> list[str]:
            found = [json.loads(line) for line in lines.getvalue().splitlines()]
            return [f["outcome"] for f in found if f["event"] == "request" and f["file"] == file]

        try:
            with CASession(config, store) as session:
                batch = BatchProcessor(session)
                session.require_audit_trail()
                first, second = session.spool.claim_incoming(config.default_profile)
                secrets.rename(hidden)
                stop_agent(home)
                batch.process_batch([first])
                with pytest.raises(AuditSignatureError):
                    batch.process_batch([second])
                assert logged("b.csr") == []
                hidden.rename(secrets)
                batch.process_batch([second])
        finally:
            configure_logging(None)
            if hidden.exists():
                hidden.rename(secrets)
            store.close()
        assert (logged("a.csr"), logged("b.csr")) == (["issued"], ["issued"])


def identity(path: Path) -> str:
    return load_request(path.read_bytes()).sha256


class TestPerRequestIsolation:
    def test_a_recording_that_fails_half_way_leaves_nothing_of_it(self, ca: CA):
        """Invariant 9 inside the register: a request whose recording fails after its
        certificate row is written (a trigger refuses its audit entry) is answered
        request.internal_error, none of its rows stay, and the batch goes on."""
        import sqlite3

        ca.submit("server/boom.csr", pem(make_csr("boom.sample.com")[1]))
        ca.submit("server/fine.csr", pem(make_csr("fine.sample.com")[1]))
        with sqlite3.connect(ca.dir / "ca.db") as db:
            db.execute("CREATE TRIGGER boom BEFORE INSERT ON audit WHEN NEW.event = "
                       "'request.issued' AND json_extract(NEW.data, '$.file') = 'boom.csr' "
                       "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END")
        summary = run(ca, now())
        assert (summary.issued, summary.rejected) == (1, 1)
        assert ca.result("fine")["status"] == "issued"
        boom = ca.result("boom")
        assert [r["code"] for r in boom["reasons"]] == ["request.internal_error"]
        with sqlite3.connect(ca.dir / "ca.db") as db:
            db.execute("DROP TRIGGER boom")
            left = db.execute("SELECT COUNT(*) FROM certificates WHERE subject LIKE "
                              "'%boom%'").fetchone()[0]
            requests = db.execute("SELECT COUNT(*) FROM requests WHERE sha256 = ?",
                                  (boom["request_sha256"],)).fetchone()[0]
        assert (left, requests) == (0, 0)  # the failed request can be sent again
        assert verify(ca, ca.outgoing / "audit").returncode == 0


class TestGarbageCollector:
    def test_a_pass_leaves_the_collector_as_it_found_it(self, ca: CA):
        """A pass collects less often and freezes what lived before it; afterwards (the
        daemon, a long demo) the defaults are back and nothing stays frozen."""
        import gc

        before = gc.get_threshold()
        ca.submit("server/gc.csr", pem(make_csr("gc.sample.com")[1]))
        assert run(ca, now()).issued == 1
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
