"""The signed audit log: recorded, checkpointed, exported, and every kind of damage found."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spoolca.keys.openpgp import ApplianceKey, stop_agent
from tests.pki import CA, fingerprint_of, make_csr, pem, spoolca, wait_for


@pytest.fixture
def logged(ca: CA) -> CA:
    """A CA with a few batches behind it: issued, rejected, revoked, CRLs."""
    for name in ("a", "b"):
        ca.submit(f"server/{name}.csr", pem(make_csr(f"{name}.sample.com")[1]))
        ca.process()
    ca.submit("server/bad.csr", b"not a csr")
    ca.process()
    ca.run("revoke", ca.result("a")["serial"], "--reason", "superseded")
    return ca


def export_copy(ca: CA, tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    shutil.copytree(ca.outgoing / "audit", folder)
    return folder


def verify(ca: CA, folder: Path, *extra: str):
    """What the README tells an auditor to run: the export, and the fingerprint pinned."""
    return spoolca("audit", "verify", "--dir", str(folder), "--fingerprint",
                   fingerprint_of(ca), *extra)


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("log-*.jsonl"))


def rewrite(folder: Path, change) -> None:
    """Apply `change` to the list of all lines, then write them back as one segment."""
    lines = b"".join(p.read_bytes() for p in segments(folder)).splitlines(keepends=True)
    for path in segments(folder):
        path.unlink()
    lines = change(lines)
    (folder / f"log-{1:010d}-{len(lines):010d}.jsonl").write_bytes(b"".join(lines))


def rechain(lines: list[bytes]) -> list[bytes]:
    """What a forger would do: renumber and recompute every hash after an edit."""
    from spoolca.register.chain import GENESIS, canonical

    out, prev = [], GENESIS
    for seq, line in enumerate(lines, start=1):
        entry = json.loads(line)
        entry.pop("hash")
        entry.update(seq=seq, prev=prev)
        entry["hash"] = hashlib.sha256(canonical(entry)).hexdigest()
        prev = entry["hash"]
        out.append(canonical(entry) + b"\n")
    return out


def forged(lines: list[bytes]) -> list[bytes]:
    """Every issuance deleted and one invented, as the forger in the issue did."""
    kept = [line for line in lines if b'"request.issued"' not in line]
    fake = json.loads(kept[-1])
    fake["event"], fake["data"] = "request.issued", {"serial": "0BADC0DE", "note": "forged"}
    return [*kept, json.dumps(fake).encode() + b"\n"]


class TestRecording:
    def test_every_state_change_is_an_entry(self, logged: CA):
        """init, CRLs, key unlock, issue, reject, revoke: all in the log, no secret."""
        events = [e["event"] for e in json.loads(logged.run("audit", "show", "--json").stdout)]
        for event in ("ca.initialized", "crl.published", "key.unlocked", "request.issued",
                      "request.rejected", "certificate.revoked"):
            assert event in events, event
        text = logged.run("audit", "show", "--json").stdout
        assert "PRIVATE KEY" not in text

    def test_show_filters(self, logged: CA):
        """--event and --serial narrow the table an auditor reads."""
        serial = logged.result("a")["serial"]
        rows = json.loads(logged.run("audit", "show", "--json", "--serial", serial).stdout)
        assert {r["event"] for r in rows} == {"request.issued", "certificate.revoked"}
        table = logged.run("audit", "show", "--event", "request.rejected").stdout
        assert "codes=['csr.unparseable']" in table

    def test_a_checkpoint_follows_each_batch(self, logged: CA):
        """After the last batch, the head is signed and exported."""
        folder = logged.outgoing / "audit"
        last_line = json.loads(segments(folder)[-1].read_bytes().splitlines()[-1])
        checkpoints = sorted(folder.glob("checkpoint-*.json"))
        assert json.loads(checkpoints[-1].read_text())["seq"] == last_line["seq"]

    def test_a_long_log_is_exported_in_bounded_segments(self, ca: CA):
        """A pass of 100,000 requests exports once, at its end: in segments of at most
        SEGMENT_ENTRIES entries, never the whole log in memory, and it verifies."""
        import datetime as dt

        from spoolca.config import load_config
        from spoolca.process.session import CASession
        from spoolca.register.audit import SEGMENT_ENTRIES
        from spoolca.register.store import Store

        config = load_config(ca.config)
        store = Store(config.database)
        try:
            with store.transaction("test", dt.datetime.now(dt.UTC)) as tx:
                for number in range(SEGMENT_ENTRIES + 10):
                    tx.record("config.loaded", {"number": number})  # any catalogued event
            with CASession(config, store) as session:
                session.seal()
        finally:
            store.close()
        folder = ca.outgoing / "audit"
        sizes = [len(segment.read_bytes().splitlines()) for segment in segments(folder)]
        assert max(sizes) == SEGMENT_ENTRIES and sum(sizes) > SEGMENT_ENTRIES + 10
        assert verify(ca, folder).returncode == 0
        # Mid-pass: once a segment's worth of signed entries waits, the next batch's seal
        # exports it, before the pass ends.
        shutil.rmtree(folder)
        store = Store(config.database)
        try:
            with CASession(config, store) as session:
                session.seal_behind()
                assert sum(len(s.read_bytes().splitlines()) for s in segments(folder)) \
                    >= SEGMENT_ENTRIES
        finally:
            store.close()
        assert verify(ca, folder).returncode == 0


class TestIndependentCheck:
    def test_plain_gpg_verifies_a_checkpoint(self, logged: CA):
        """An auditor's own gpg, with only the exported public key, says Good signature."""
        folder = logged.outgoing / "audit"
        home = tempfile.mkdtemp(prefix="auditor-")
        try:
            env = {**os.environ, "GNUPGHOME": home}
            subprocess.run(["gpg", "--batch", "--import", str(folder / "appliance-key.asc")],
                           env=env, check=True, capture_output=True)
            point = sorted(folder.glob("checkpoint-*.json"))[-1]
            result = subprocess.run(["gpg", "--batch", "--verify", f"{point}.asc", str(point)],
                                    env=env, capture_output=True, text=True)
            assert result.returncode == 0 and "Good signature" in result.stderr
        finally:
            stop_agent(Path(home))
            shutil.rmtree(home, ignore_errors=True)

    def test_a_few_lines_of_python_recompute_the_chain(self, logged: CA):
        """The README's recipe: sorted keys, no spaces, UTF-8, SHA-256 without "hash"."""
        previous = "0" * 64
        for path in segments(logged.outgoing / "audit"):
            for line in path.read_bytes().splitlines():
                entry = json.loads(line)
                digest = entry.pop("hash")
                assert entry["prev"] == previous
                body = json.dumps(entry, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False).encode()
                assert hashlib.sha256(body).hexdigest() == digest
                previous = digest


class TestTamperMatrix:
    def test_intact(self, logged: CA, tmp_path):
        """The untouched export verifies: exit 0."""
        result = verify(logged, export_copy(logged, tmp_path))
        assert result.returncode == 0 and result.stdout.startswith("intact:")

    def test_one_byte_of_data_changed(self, logged: CA, tmp_path):
        """A serial edited in one entry: that entry is named, modified."""
        folder = export_copy(logged, tmp_path)
        def change(lines):
            index = next(i for i, line in enumerate(lines) if b"request.issued" in line)
            lines[index] = lines[index].replace(b'"serial":"', b'"serial":"0', 1)
            return lines
        rewrite(folder, change)
        result = verify(logged, folder)
        assert result.returncode == 1 and ": modified:" in result.stdout

    def test_entry_deleted(self, logged: CA, tmp_path):
        """An entry removed: the gap is named."""
        folder = export_copy(logged, tmp_path)
        rewrite(folder, lambda lines: lines[:3] + lines[4:])
        result = verify(logged, folder)
        assert result.returncode == 1 and "DAMAGED at entry 4: deleted" in result.stdout

    def test_two_entries_swapped(self, logged: CA, tmp_path):
        """Two entries exchanged: reordering."""
        folder = export_copy(logged, tmp_path)
        rewrite(folder, lambda lines: [*lines[:3], lines[4], lines[3], *lines[5:]])
        result = verify(logged, folder)
        assert result.returncode == 1 and "DAMAGED at entry 4" in result.stdout

    def test_forged_entry_with_a_recomputed_chain(self, logged: CA, tmp_path):
        """A forger inserts an entry and recomputes every hash: the chain holds, the signed
        checkpoint does not."""
        folder = export_copy(logged, tmp_path)
        def forge(lines):
            fake = json.loads(lines[3])
            fake["event"], fake["data"] = "request.rejected", {"note": "forged"}
            return rechain([*lines[:4], json.dumps(fake).encode() + b"\n", *lines[4:]])
        rewrite(folder, forge)
        result = verify(logged, folder)
        assert result.returncode == 1 and "rewritten" in result.stdout

    def test_truncated_before_the_last_checkpoint(self, logged: CA, tmp_path):
        """The tail cut off: the signed checkpoint proves there was more."""
        folder = export_copy(logged, tmp_path)
        rewrite(folder, lambda lines: lines[:4])
        result = verify(logged, folder)
        assert result.returncode == 1 and "truncated" in result.stdout

    def test_the_key_beside_the_log_replaced(self, logged: CA, tmp_path):
        """An attacker's key and signatures in the export: refused, the real key is pinned."""
        folder = export_copy(logged, tmp_path)
        forger = ApplianceKey.create(tmp_path / "forger", None, "forger")
        try:
            (folder / "appliance-key.asc").write_text(forger.public_key())
            for point in folder.glob("checkpoint-*.json"):
                point.with_name(point.name + ".asc").write_text(forger.sign(point.read_bytes()))
            result = verify(logged, folder)  # the fingerprint pinned, the export's key compared
            assert result.returncode == 1 and "is not the trusted key" in result.stdout
            real = tmp_path / "real-key.asc"
            shutil.copy(logged.outgoing / "audit" / "appliance-key.asc", real)
            trusting = spoolca("audit", "verify", "--dir", str(folder), "--trusted-key",
                               str(real))
            assert trusting.returncode == 1 and "replaced" in trusting.stdout
            (folder / "appliance-key.asc").unlink()  # the forger's key gone, signatures stay
            result = spoolca("audit", "verify", "--dir", str(folder), "--trusted-key", str(real))
            assert result.returncode == 1 and "bad signature" in result.stdout
        finally:
            stop_agent(tmp_path / "forger")

    def test_an_unsigned_tail_fails_closed(self, logged: CA, tmp_path):
        """Entries after the last checkpoint: a genuine export never has them, so exit 1;
        the documented flag accepts them with a loud warning."""
        folder = export_copy(logged, tmp_path)
        last = sorted(p.name for p in folder.glob("checkpoint-*.json"))[-1]
        for point in folder.glob("checkpoint-*"):
            if point.name.startswith(last):
                point.unlink()
        result = verify(logged, folder)
        assert result.returncode == 1 and result.stdout.startswith("NOT VERIFIED")
        allowed = verify(logged, folder, "--allow-unsigned-tail")
        assert allowed.returncode == 0 and "WARNING" in allowed.stdout

    def test_rewritten_with_every_checkpoint_deleted(self, logged: CA, tmp_path):
        """Forged: issuances deleted, one invented, the chain recomputed, checkpoints
        removed. This said 'intact' and exited 0."""
        folder = export_copy(logged, tmp_path)
        for point in folder.glob("checkpoint-*"):
            point.unlink()
        rewrite(folder, lambda lines: rechain(forged(lines)))
        result = verify(logged, folder)
        assert result.returncode == 1 and "no signed checkpoint at all" in result.stdout

    def test_only_the_first_checkpoint_kept_and_the_rest_rewritten(self, logged: CA,
                                                                    tmp_path):
        """The init checkpoint is genuine; everything after it is the forger's."""
        folder = export_copy(logged, tmp_path)
        points = sorted(folder.glob("checkpoint-*.json"))
        first = int(points[0].name.split("-")[1].split(".")[0])
        for point in folder.glob("checkpoint-*"):
            if not point.name.startswith(points[0].name):
                point.unlink()
        rewrite(folder, lambda lines: rechain(lines[:first] + forged(lines[first:])))
        result = verify(logged, folder)
        assert result.returncode == 1 and "NOT VERIFIED" in result.stdout

    def test_a_forger_extends_the_log_past_the_last_checkpoint(self, logged: CA, tmp_path):
        """Entries appended after the last checkpoint, the chain continued correctly."""
        folder = export_copy(logged, tmp_path)
        rewrite(folder, lambda lines: rechain([*lines, *forged(lines[-2:])]))
        result = verify(logged, folder)
        assert result.returncode == 1 and "NOT VERIFIED" in result.stdout

    def test_a_key_file_alone_is_not_trusted(self, logged: CA, tmp_path):
        """--key without --fingerprint trusted whatever key sat on the stick: now a usage
        error; the auditor names the key they trust."""
        folder = export_copy(logged, tmp_path)
        result = spoolca("audit", "verify", "--dir", str(folder), "--key",
                         str(folder / "appliance-key.asc"))
        assert result.returncode == 2 and "--fingerprint" in result.stderr

    def test_the_head_is_named_and_since_head_detects_a_rollback(self, logged: CA,
                                                                 tmp_path):
        """verify prints the head to write down; --since-head refuses an older log."""
        old = verify(logged, export_copy(logged, tmp_path / "then"))
        head = next(line for line in old.stdout.splitlines() if line.startswith("head:"))
        seq, digest = head.split()[2].rstrip(","), head.split()[4].rstrip(",")
        logged.submit("server/c.csr", pem(make_csr("c.sample.com")[1]))
        logged.process()
        newer = export_copy(logged, tmp_path / "now")
        assert verify(logged, newer, "--since-head", f"{seq}:{digest}").returncode == 0
        older = export_copy(logged, tmp_path / "rolled")
        rewrite(older, lambda lines: lines[:int(seq) - 1])
        result = verify(logged, older, "--since-head", f"{seq}:{digest}")
        assert result.returncode == 1 and "rolled back" in result.stdout

    def test_since_checkpoint_detects_a_rollback(self, logged: CA, tmp_path):
        """An auditor keeps a checkpoint from an earlier stick; an older log is refused."""
        old = export_copy(logged, tmp_path / "then")
        kept = sorted(old.glob("checkpoint-*.json"))[-1]
        logged.submit("server/c.csr", pem(make_csr("c.sample.com")[1]))
        logged.process()
        current = export_copy(logged, tmp_path / "now")
        assert verify(logged, current, "--since-checkpoint", str(kept)).returncode == 0
        rolled_back = export_copy(logged, tmp_path / "rolled")
        for point in rolled_back.glob("checkpoint-*"):
            point.unlink()
        rewrite(rolled_back, lambda lines: lines[:3])
        result = verify(logged, rolled_back, "--since-checkpoint", str(kept))
        assert result.returncode == 1 and "truncated" in result.stdout


class TestFailClosed:
    def test_no_issuance_without_a_signable_audit_trail(self, ca: CA):
        """With the audit key unusable, process refuses (exit 1) and issues nothing more."""
        ca.submit("server/one.csr", pem(make_csr("one.sample.com")[1]))
        ca.process()
        stop_agent(ca.dir / "gnupg")
        shutil.rmtree(ca.dir / "gnupg" / "private-keys-v1.d")
        ca.submit("server/two.csr", pem(make_csr("two.sample.com")[1]))
        result = ca.run("process")
        assert result.returncode == 1 and "audit checkpoint" in result.stderr
        ca.submit("server/three.csr", pem(make_csr("three.sample.com")[1]))
        again = ca.run("process")
        assert again.returncode == 1
        assert not (ca.outgoing / "three").exists()
        assert (ca.incoming / "server" / "three.csr").exists()  # kept, waiting


_TEXT = st.text(max_size=12)
_DATA = st.dictionaries(_TEXT, st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=12), max_size=5)


class TestEntrySerialization:
    """An entry's data is serialized once, when it is written; the hashed body and the
    exported line are assembled around that text. Both must be byte for byte what a
    verifier's json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    makes, for any data and any strings (quotes, backslashes, control characters,
    non-ASCII)."""

    @settings(max_examples=300, deadline=None, database=None)
    @given(seq=st.integers(1, 2**62), time=_TEXT, event=_TEXT, actor=_TEXT, data=_DATA,
           prev=_TEXT, digest=_TEXT)
    def test_assembled_entries_are_canonical(self, seq, time, event, actor, data, prev,
                                             digest):
        from spoolca.register.chain import canonical, entry_hash, entry_text

        body = {"seq": seq, "time": time, "event": event, "actor": actor, "data": data,
                "prev": prev}
        text = canonical(data).decode()
        assert entry_text(seq, time, event, actor, text, prev).encode() == canonical(body)
        assert entry_text(seq, time, event, actor, text, prev, digest).encode() == \
            canonical({**body, "hash": digest})
        assert entry_hash(seq, time, event, actor, data, prev) == \
            hashlib.sha256(canonical(body)).hexdigest()

    def test_an_entry_stored_with_spaces_is_exported_canonical(self, ca: CA):
        """Counter-case: a register written before data was stored canonical (with
        json.dumps' default spaces) still exports canonical lines that verify."""
        import sqlite3

        from spoolca.config import load_config
        from spoolca.register.audit import _line
        from spoolca.register.chain import canonical
        from spoolca.register.store import Store

        with sqlite3.connect(ca.dir / "ca.db") as db:
            rows = db.execute("SELECT seq, data FROM audit").fetchall()
            for seq, data in rows:
                db.execute("UPDATE audit SET data = ? WHERE seq = ?",
                           (json.dumps(json.loads(data), sort_keys=True, ensure_ascii=False),
                            seq))
        store = Store(load_config(ca.config).database)
        try:
            entries = list(store.audit_entries())
            assert any(row.data != canonical(json.loads(row.data)).decode() for row in entries)
            for row in entries:
                line = _line(row)
                assert line == canonical(json.loads(line)) + b"\n"
                assert json.loads(line)["data"] == json.loads(row.data)
        finally:
            store.close()
        ca.submit("server/after.csr", pem(make_csr("after.sample.com")[1]))
        assert ca.process().returncode == 0
        assert verify(ca, ca.outgoing / "audit").returncode == 0


class TestChainByDefinition:
    """An entry's hash is checked as it is defined (the entry without its own top-level
    `hash`, canonical, hashed), never by cutting a pattern out of the line: an entry's
    data may hold a `hash` of its own, and a requester can put text into the log."""

    def test_verify_holds_after_backups(self, logged: CA, tmp_path):
        """The issue's repro: `backup.made` carries audit_head.hash, which comes first in
        its line. Two backups later, the export verifies and each drill passes."""
        fingerprint = fingerprint_of(logged)
        for number in (1, 2):
            archive = tmp_path / f"backup-{number}.tar.gz"
            assert logged.run("backup", str(archive)).returncode == 0
            drill = logged.run("backup", "--verify", str(archive), "--fingerprint",
                               fingerprint)
            assert drill.returncode == 0, drill.stderr
            logged.run("audit", "export")
            result = verify(logged, logged.outgoing / "audit")
            assert result.returncode == 0, result.stdout
        lines = b"".join(p.read_bytes() for p in segments(logged.outgoing / "audit"))
        assert lines.count(b'"event":"backup.made"') == 2

    def test_a_requester_cannot_plant_a_hash_field(self, ca: CA, tmp_path):
        """A file name holding `"hash":"<64 hex>",` reaches the log through the request's
        entry; the log still verifies, and an edit of that entry is still found."""
        planted = '"hash":"' + "ab" * 32 + '",'
        ca.submit(f"server/{planted}x.csr", pem(make_csr("planted.sample.com")[1]))
        assert ca.process().returncode == 0
        folder = export_copy(ca, tmp_path)
        text = b"".join(p.read_bytes() for p in segments(folder))
        assert planted.replace('"', '\\"').encode() in text  # it is in the log, escaped
        assert verify(ca, folder).returncode == 0

        def change(lines):
            index = next(i for i, line in enumerate(lines) if b"planted" in line)
            lines[index] = lines[index].replace(b"planted", b"PLANTED", 1)
            return lines
        rewrite(folder, change)
        result = verify(ca, folder)
        assert result.returncode == 1 and ": modified:" in result.stdout

    @settings(max_examples=200, deadline=None, database=None)
    @given(data=_DATA, nested=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
    def test_any_data_verifies_by_definition(self, data, nested):
        """For any data, with `hash` keys nested first in sort order, the line the writer
        assembles passes the definition; a cut of the first `"hash":"…",` in the line
        (the old verifier) does not, whenever nested data holds one first."""
        from spoolca.register.chain import body_hash, canonical, entry_text, text_hash

        data = {"audit_head": {"hash": nested, "seq": 1}, **data}
        text = canonical(data).decode()
        digest = text_hash(7, "2026-12-07T00:00:00Z", "backup.made", "cli", text, "0" * 64)
        line = entry_text(7, "2026-12-07T00:00:00Z", "backup.made", "cli", text, "0" * 64,
                          digest).encode()
        assert body_hash(json.loads(line)) == digest
        import re
        cut = re.sub(rb'"hash":"[0-9a-f]{64}",', b"", line, count=1)
        assert hashlib.sha256(cut).hexdigest() != digest  # the counter-case: a byte pattern



def waiting_for_lock(folder: Path) -> bool:
    """Whether some process waits for an flock on FOLDER (/proc/locks marks a waiter
    '->')."""
    inode = os.stat(folder).st_ino
    return any("->" in line and f":{inode} " in line
               for line in Path("/proc/locks").read_text().splitlines())


class TestConcurrentExports:
    def test_an_export_waits_for_the_one_in_progress(self, ca: CA):
        """Two processes exporting to outgoing/audit/ at once (the daemon and a backup)
        could each write a segment from the same first entry: the log held entries twice
        and failed verification. Here the folder is held as another exporter holds it: a
        `process` meanwhile waits for it, then exports what is missing, and the log
        verifies."""
        import sys

        from spoolca.host.fsutil import exclusive_lock

        ca.submit("server/turns.csr", pem(make_csr("turns.sample.com")[1]))
        folder = ca.outgoing / "audit"
        before = segments(folder)
        with exclusive_lock(folder):
            process = subprocess.Popen(
                [sys.executable, "-m", "spoolca.cli", "--config", str(ca.config), "process"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for(lambda: waiting_for_lock(folder) or process.poll() is not None,
                         60, "process to reach the export")
                assert process.poll() is None, "it exported without waiting its turn"
                assert segments(folder) == before
            except BaseException:
                process.kill()
                process.wait()
                raise
        assert process.wait(timeout=120) == 0
        assert len(segments(folder)) > len(before)
        assert verify(ca, folder).returncode == 0
