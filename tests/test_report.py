"""The stick report, judged as a person sees it: REPORT.html rendered by headless Chromium
with no network (a network namespace of its own), its DOM read back and a screenshot
taken; report.json and `spoolca status` hold the same facts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.pki import CA, make_csr, pem

HOSTILE = "<img src=x onerror=alert(1)>.txt"


@pytest.fixture
def exported(ca: CA, tmp_path: Path) -> Path:
    """A trip: two requests issued, one rejected, an unsigned revocation request refused;
    a hostile file name and a private key left on the stick."""
    stick = tmp_path / "stick"
    (stick / "server").mkdir(parents=True)
    (stick / "revoke").mkdir()
    for name in ("alpha", "beta"):
        key, csr = make_csr(f"{name}.sample.com")
        (stick / "server" / f"{name}.csr").write_bytes(pem(csr))
    (stick / "server" / "beta.key").write_bytes(key.private_bytes(  # beside its CSR, by mistake
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (stick / "server" / "nocompany.csr").write_bytes(
        pem(make_csr("nocompany.sample.com", company=False)[1]))
    (stick / "server" / HOSTILE).write_text("junk")
    (stick / "revoke" / "lost.json").write_text('{"serial": "01", "reason": "keyCompromise"}')
    assert ca.run("media", "ingest", str(stick)).returncode == 0
    ca.process()
    export = ca.run("media", "export", str(stick))
    assert export.returncode == 0, export.stderr
    return stick / "spoolca-results"


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the report tests need chromium (Debian package) and root")
        pytest.skip("needs chromium and root (for a network namespace)")
    return found


def browse(page: Path, *args: str) -> str:
    """Chromium on PAGE with no network at all: `unshare --net` gives it a namespace
    with only a loopback that is down."""
    profile = page.parent.parent / "chromium-profile"
    command = ["unshare", "--net", "--", chromium(), "--headless", "--no-sandbox",
               "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               *args, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Page(HTMLParser):
    """The rendered DOM: text by element id, table rows, every element's tag."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.rows: dict[str, str] = {}
        self.tags: list[str] = []
        self._open: list[tuple[str | None, str | None]] = []
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("meta", "br", "line", "circle", "img", "link"):
            return
        found = dict(attrs)
        self._open.append((found.get("id"), found.get("data-name")))
        for key in ("id", "data-name"):
            if found.get(key):
                (self.by_id if key == "id" else self.rows)[found[key]] = ""

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("meta", "br", "line", "circle", "img", "link"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident, row in self._open:
            if ident:
                self.by_id[ident] += data
            if row:
                self.rows[row] += data


def dom_of(root: Path) -> Page:
    return Page(browse(root / "REPORT.html", "--dump-dom"))


class TestStickReport:
    def test_the_report_travels_signed(self, exported: Path):
        """REPORT.html and report.json are on the stick and in the signed SHA256SUMS."""
        sums = (exported / "SHA256SUMS").read_text()
        assert "  REPORT.html\n" in sums and "  report.json\n" in sums
        check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=exported,
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr

    def test_report_json_holds_the_trip_and_the_return_by_date(self, ca: CA, exported: Path):
        facts = json.loads((exported / "report.json").read_text())
        outcomes = {r["name"]: r for r in facts["trip"]["requests"]}
        assert {n: r["status"] for n, r in outcomes.items()} == {
            "alpha": "issued", "beta": "issued", "nocompany": "rejected", "lost": "rejected"}
        assert outcomes["alpha"]["serial"] and outcomes["alpha"]["not_after"]
        assert outcomes["nocompany"]["reasons"]
        assert outcomes["alpha"]["file"] == "server/alpha.csr"  # the requester's own name
        assert outcomes["lost"]["kind"] == "revocation request"
        assert outcomes["lost"]["file"] == "revoke/lost.json"
        schedule = json.loads((exported / "crl" / "next-update.json").read_text())
        assert facts["return_by"]["at"] == schedule["return_by"]
        first = min((v for k, v in schedule.items() if isinstance(v, dict)
                     and k != "return_window"), key=lambda v: v["next_update"])
        assert facts["return_by"]["lapses_at"] == first["next_update"]
        assert facts["return_by"]["from"] == first["next_crl_from"] < facts["return_by"]["at"]
        assert sorted(s["file"] for s in facts["trip"]["skipped"]) == [
            f"server/{HOSTILE}", "server/beta.key"]
        assert facts["trip"]["counts"] == {
            "requests": 4, "issued": 2, "rejected": 1, "revoked": 0,
            "revocations_refused": 1, "new": 4, "resent": 0, "left_on_stick": 2}
        assert facts["totals"]["overall"]["issued"] == 2
        status = json.loads(ca.run("status", "--json").stdout)
        assert status["return_by"] == facts["return_by"]

    def test_chromium_shows_what_an_operator_needs(self, exported: Path):
        """The DOM holds the return-by date, each request's outcome, the CA expiry; the
        hostile name is text, not an element; a screenshot is taken."""
        page = dom_of(exported)
        facts = json.loads((exported / "report.json").read_text())
        back, opens = facts["return_by"]["at"], facts["return_by"]["from"]
        assert page.by_id["return-by-date"].strip() == f"{back[:10]} {back[11:16]} UTC"
        assert page.by_id["return-from"].strip() == f"{opens[:10]} {opens[11:16]} UTC"
        counts = {key: page.by_id[f"count-{key}"].strip() for key in (
            "requests", "issued", "rejected", "revoked", "revocations-refused", "new",
            "resent", "left")}
        assert counts == {"requests": "4", "issued": "2", "rejected": "1", "revoked": "0",
                          "revocations-refused": "1", "new": "4", "resent": "0", "left": "2"}
        assert len(page.rows) == 4  # the counts agree with the rows
        assert "issued" in page.rows["alpha"] and "issued" in page.rows["beta"]
        assert "server/alpha.csr" in page.rows["alpha"] and "new" in page.rows["alpha"]
        assert "rejected" in page.rows["nocompany"]
        reason = next(r for r in facts["trip"]["requests"]
                      if r["name"] == "nocompany")["reasons"][0]["message"]
        assert reason in page.rows["nocompany"]
        lost = page.rows["lost"]
        assert "revocation request" in lost and "NAME.json.asc" in lost
        assert "profile" not in lost and ".csr" not in lost
        intermediate = facts["authorities"][1]["not_after"]
        assert intermediate[:10] in page.by_id["authorities"]
        assert HOSTILE in page.by_id["skipped"] and "img" not in page.tags
        # nothing due within the default windows: the one warning is the key on the stick
        assert page.by_id["warning-list"].count("private key was found") == 1
        assert "server/beta.key" in page.by_id["warning-list"]
        shot = exported.parent.parent / "report.png"
        browse(exported / "REPORT.html", f"--screenshot={shot}", "--window-size=1100,2400")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000

    def test_a_crl_due_within_the_warning_window_is_a_warning(self, ca: CA, exported: Path):
        """Counter-case: with crl_warning_days = 60 the intermediate's 30-day CRL is due
        within the window: the page and `status` say so."""
        config = ca.config.read_text()
        ca.config.write_text(config.replace("crl_warning_days = 14", "crl_warning_days = 60"))
        assert "crl_warning_days = 60" in ca.config.read_text()
        stick = exported.parent
        assert ca.run("media", "export", str(stick)).returncode == 0
        warnings = dom_of(exported).by_id["warning-list"]
        assert "intermediate CA's CRL ends in" in warnings
        assert "WARNING: the intermediate CA's CRL ends in" in ca.run("status").stdout

    def test_a_second_trip_tells_new_results_from_re_sent_ones(self, ca: CA, exported: Path):
        """The same stick back with one more request: the earlier answers are marked as
        sent before (with their date), the new one as new; the counts agree."""
        stick = exported.parent
        (stick / "server" / "gamma.csr").write_bytes(pem(make_csr("gamma.sample.com")[1]))
        assert ca.run("media", "ingest", str(stick)).returncode == 0
        ca.process()
        assert ca.run("media", "export", str(stick)).returncode == 0
        facts = json.loads((exported / "report.json").read_text())
        resent = {r["name"]: r["resent"] for r in facts["trip"]["requests"]}
        assert resent == {"alpha": True, "beta": True, "nocompany": True, "lost": True,
                          "gamma": False}
        assert facts["trip"]["counts"]["new"] == 1 and facts["trip"]["counts"]["resent"] == 4
        assert "sent before, decided" in dom_of(exported).rows["alpha"]

    def test_no_host_path_leaves_on_the_stick(self, ca: CA, exported: Path):
        """The appliance's paths (state directory, key files, the stick's mount point)
        appear nowhere in what goes out."""
        for path in exported.rglob("*"):
            if path.is_file() and path.suffix in (".json", ".html", ".txt"):
                text = path.read_text()
                assert str(ca.dir) not in text and str(exported.parent) not in text, path

    def test_the_page_is_self_contained(self, exported: Path):
        """No script, no reference to anything outside the file: it opens offline."""
        html = (exported / "REPORT.html").read_text()
        for pattern in (r"<script", r"\bsrc\s*=", r"\bhref\s*=", r"url\(", r"@import",
                        r"<link", r"https?://"):
            assert not re.search(pattern, html.replace(HOSTILE.replace("<", "&lt;")
                                                      .replace(">", "&gt;"), "")), pattern


def on_a_terminal(ca: CA, *args: str) -> tuple[str, str]:
    """Run spoolca with stderr on a pseudo-terminal, as an operator sees it; returns
    (stdout, what the terminal showed)."""
    import pty
    import sys

    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    process = subprocess.Popen([sys.executable, "-m", "spoolca.cli", "--config",
                                str(ca.config), *args], stdout=subprocess.PIPE,
                               stderr=terminal, env=env, text=True)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not chunk:
            break
        shown += chunk
    stdout = process.communicate(timeout=120)[0]
    os.close(controller)
    return stdout, shown.decode(errors="replace")


class TestProgress:
    def test_a_long_run_shows_progress_on_a_terminal_only(self, ca: CA, tmp_path: Path):
        """40 requests: a bar on a terminal; the counter-case, stderr not a terminal (a
        pipe, journald): nothing but the summary."""
        for i in range(40):
            ca.submit(f"server/p{i}.csr", pem(make_csr(f"p{i}.sample.com")[1]))
        stdout, terminal = on_a_terminal(ca, "process")
        assert "processed 40 request(s): 40 issued" in stdout
        assert "answering:   0%" in terminal and "/40 [" in terminal, terminal
        stick = tmp_path / "stick"
        stick.mkdir()
        piped = ca.run("media", "export", str(stick))  # no trip: CA files only
        assert piped.returncode == 0 and "export" not in piped.stderr
        for i in range(40):
            ca.submit(f"server/q{i}.csr", pem(make_csr(f"q{i}.sample.com")[1]))
        quiet = ca.run("process")
        assert "processed 40 request(s)" in quiet.stdout and "answering" not in quiet.stderr
        assert all(json.loads(line)["event"] for line in quiet.stderr.splitlines())  # JSON
