"""Reading ahead in a helper process (spoolca.process.reading): the helper's reading is
exactly this process's, a helper that dies costs nothing but speed, and none outlives
its pass."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from spoolca.config import load_config
from spoolca.log import configure_logging
from spoolca.process.batch import BatchProcessor
from spoolca.process.items import ReadJob
from spoolca.process.passes import run_pass
from spoolca.process.reading import ReadAhead, read_file
from spoolca.process.session import CASession
from spoolca.register.store import Store
from tests.pki import CA, make_csr, pem, wait_for

LIMIT = 4096


def helpers() -> list[int]:
    """Our read-ahead helpers still running."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            command = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"spoolca.process.reading" in command:
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def logged() -> Iterator[io.StringIO]:
    """The log lines written meanwhile."""
    lines = io.StringIO()
    configure_logging(lines)
    try:
        yield lines
    finally:
        configure_logging(None)


def warnings(lines: io.StringIO) -> list[str]:
    found = [json.loads(line) for line in lines.getvalue().splitlines()]
    return [entry["event"] for entry in found if entry["level"] == "warning"]


def files(folder: Path) -> list[ReadJob]:
    """One of each kind of file a stick brings, as jobs."""
    good = pem(make_csr("good.sample.com")[1])
    flipped = bytearray(make_csr("flip.sample.com")[1].public_bytes(serialization.Encoding.DER))
    flipped[-5] ^= 0x01
    made = {
        "good.csr": good, "flip.der": bytes(flipped), "garbage.csr": b"not a request\n",
        "large.csr": b"-" * (LIMIT + 1), "empty.csr": b"", "notes.txt": b"hello\n",
        "signed.csr": good, "signed.csr.asc": b"-----BEGIN PGP SIGNATURE-----\n",
    }
    for name, data in made.items():
        (folder / name).write_bytes(data)
    (folder / "link.csr").symlink_to(folder / "good.csr")
    jobs = [ReadJob(str(folder / name), None, LIMIT, name.endswith((".csr", ".der")))
            for name in sorted(made) if not name.endswith(".asc")]
    jobs.append(ReadJob(str(folder / "link.csr"), None, LIMIT, True))
    return [job._replace(signature=f"{job.path}.asc") if job.path.endswith("signed.csr")
            else job for job in jobs]


class TestHelper:
    def test_the_helper_reads_exactly_as_this_process_does(self, tmp_path: Path):
        """Each kind of file (a request, a forged self-signature, garbage, too large,
        empty, not a request's name, a symlink, a detached signature) comes back from
        the helper as this process reads it; a file not given to it is read here."""
        jobs = files(tmp_path)
        ahead = ReadAhead(jobs)
        try:
            for job in jobs:
                assert ahead.take(Path(job.path)) == read_file(job)[0], job.path
            assert ahead.take(tmp_path / "other.csr") is None
        finally:
            ahead.close()
        by_name = {Path(j.path).name: read_file(j)[0] for j in jobs}
        assert by_name["good.csr"].signature_valid and by_name["good.csr"].der
        assert not by_name["flip.der"].signature_valid  # checked there, not assumed
        assert by_name["garbage.csr"].refusal is not None
        assert by_name["large.csr"].problem == "file.too_large"
        assert by_name["link.csr"].problem == "file.not_regular"
        assert by_name["signed.csr"].signature == b"-----BEGIN PGP SIGNATURE-----\n"

    def test_a_helper_that_dies_leaves_the_reading_here(self, tmp_path: Path):
        """Killed before it answered anything: every file is read here, at once (not
        after the helper's silence timeout), nothing is raised, and it is said once."""
        jobs = files(tmp_path)
        with logged() as lines:
            ahead = ReadAhead(jobs)
            try:
                for pid in helpers():
                    os.kill(pid, 9)
                started = dt.datetime.now()
                assert all(ahead.take(Path(job.path)) is None for job in jobs)
                assert (dt.datetime.now() - started).total_seconds() < 5
            finally:
                ahead.close()
        assert helpers() == []
        assert warnings(lines) == ["the read-ahead helper failed; reading here"]

    def test_no_helper_outlives_close(self, tmp_path: Path):
        ahead = ReadAhead(files(tmp_path))
        assert len(helpers()) == 1
        ahead.close()
        assert helpers() == []


class TestLargePass:
    def test_a_pass_read_ahead_answers_every_kind_of_file(self, ca: CA):
        """600 requests: the first batch is read here, the rest by the helper, which must
        refuse a forged self-signature and garbage as this process does."""
        for number in range(597):
            ca.submit(f"server/a{number:03d}.csr", pem(make_csr(f"a{number}.sample.com")[1]))
        flipped = bytearray(make_csr("z-flip.sample.com")[1].public_bytes(
            serialization.Encoding.DER))
        flipped[-5] ^= 0x01
        ca.submit("server/z-flip.der", bytes(flipped))
        ca.submit("server/z-garbage.csr", b"not a request\n")
        ca.submit("server/z-good.csr", pem(make_csr("z-good.sample.com")[1]))
        config = load_config(ca.config)
        store = Store(config.database)
        try:
            with logged() as lines, CASession(config, store) as session:
                summary = run_pass(BatchProcessor(session))
                wait_for(lambda: helpers() == [], 5, "the helper gone after the pass")
        finally:
            store.close()
        assert warnings(lines) == []  # a helper that finished its work did not fail
        assert (summary.issued, summary.rejected) == (598, 2)
        assert [r["code"] for r in ca.result("z-flip")["reasons"]] == ["csr.signature_invalid"]
        assert [r["code"] for r in ca.result("z-garbage")["reasons"]] == ["csr.unparseable"]
        assert ca.result("z-good")["status"] == "issued"
