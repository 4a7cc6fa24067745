"""The manual: a short README that starts with the two commands, guides by reader under
docs/, references and man pages generated from the code (and failing here when they
drift), every link resolving, every audit event the code records catalogued."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from spoolca.manual import generated
from spoolca.register.events import EVENTS

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


class TestGenerated:
    @pytest.mark.parametrize("relative", sorted(generated()))
    def test_the_committed_file_is_what_the_code_makes(self, relative: str):
        """Regenerate with `python -m spoolca.manual` when this fails."""
        assert (DOCS / relative).read_text() == generated()[relative], \
            f"docs/{relative} drifted from the code: run python -m spoolca.manual"

    def test_every_command_and_finding_and_event_is_in_the_reference(self):
        from spoolca.findings import CODES
        from spoolca.manual.commandtree import commands

        cli = (DOCS / "reference" / "cli.md").read_text()
        assert all(f"## spoolca {c.path}\n" in cli for c in commands() if c.path)
        findings = (DOCS / "reference" / "findings.md").read_text()
        assert all(f"| `{code}` |" in findings for code in CODES)
        events = (DOCS / "reference" / "audit-events.md").read_text()
        assert all(f"| `{event}` |" in events for event in EVENTS)

    @pytest.mark.parametrize("page", ["spoolca.1", "spoolca.toml.5"])
    def test_the_man_pages_render_without_a_warning(self, page: str):
        if shutil.which("groff") is None:
            pytest.skip("needs groff (Debian package groff-base) to render a man page")
        done = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                               str(DOCS / "man" / page)], capture_output=True, text=True)
        assert done.returncode == 0 and done.stderr == "", done.stderr

    def test_every_command_has_its_handler(self):
        """Handlers are imported when run (start-up stays short), so a renamed module is
        found here, not by the operator: each command's module:function exists."""
        import importlib

        from spoolca.cli import build_parser
        from spoolca.cli.help import command_parsers

        missing = []
        for path, parser in command_parsers(build_parser()):
            handler = parser.get_default("func")
            if handler is None:
                continue  # a command group: its subcommands have the handlers
            module, function = handler.target.split(":")
            if not hasattr(importlib.import_module(f"spoolca.commands.{module}"), function):
                missing.append(f"{path}: {handler.target}")
        assert missing == []

    def test_every_help_ends_with_exit_status_and_examples(self):
        from spoolca.cli import build_parser
        from spoolca.cli.help import command_parsers

        for path, parser in command_parsers(build_parser()):
            text = parser.format_help()
            assert "exit status:" in text and "examples:" in text, path
            assert text.index("exit status:") < text.index("examples:"), path


def _recorded_events() -> set[str]:
    """Event names the code records: tx.record("x.y", ...), event="x.y", and the
    `event in (...)` tuples of catch-up."""
    found: set[str] = set()
    for path in (REPO / "spoolca").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "record" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                found.add(str(node.args[0].value))
            if isinstance(node, ast.keyword) and node.arg == "event" and isinstance(
                    node.value, ast.Constant):
                found.add(str(node.value.value))
    return found


class TestEventCatalogue:
    def test_every_recorded_event_is_catalogued(self):
        recorded = _recorded_events()
        assert len(recorded) > 20, "the scan is broken"
        assert recorded - set(EVENTS) == set()

    def test_every_catalogued_event_is_still_recorded(self):
        """The counter-case: no stale entry. Names built at run time (service.started
        by the daemon's lifecycle) appear as string literals somewhere in the code."""
        source = "".join(p.read_text() for p in (REPO / "spoolca").rglob("*.py")
                         if p.name != "events.py")
        assert [e for e in EVENTS if f'"{e}"' not in source] == []


    def test_an_uncatalogued_event_is_refused_and_leaves_no_entry(self, ca):
        """Tx.record checks the catalogue: a new event cannot ship undocumented. The
        transaction it was in is rolled back, as any bug's would be."""
        import datetime as dt

        from spoolca.config import load_config
        from spoolca.errors import InternalError
        from spoolca.register.store import Store

        store = Store.of(load_config(ca.config))
        try:
            before = store.audit_head()
            with pytest.raises(InternalError, match="not in the catalogue"), \
                    store.transaction("test", dt.datetime.now(dt.UTC)) as tx:
                tx.record("made.up", {})
            assert store.audit_head() == before
        finally:
            store.close()


class TestReadme:
    def test_short_and_the_two_commands_first(self):
        text = (REPO / "README.md").read_text()
        assert len(text.splitlines()) <= 150
        sections = re.findall(r"^## (.+)$", text, re.M)
        assert sections[0] == "The two commands"
        commands = re.findall(r"```sh\n(.+?)\n```", text)
        assert commands[0].endswith("spoolca demo --dir ./demo")
        assert commands[1].endswith("python -m pytest -n auto -rs")

    def test_every_link_in_the_manual_resolves(self):
        pages = [REPO / "README.md", *DOCS.rglob("*.md")]
        broken = []
        for page in pages:
            for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
                if "://" not in target and not (page.parent / target).exists():
                    broken.append(f"{page.relative_to(REPO)} -> {target}")
        assert broken == []

    def test_every_guide_is_reachable_from_the_index(self):
        index = (DOCS / "index.md").read_text()
        pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")} - {"index.md"}
        assert sorted(p for p in pages if f"({p})" not in index) == []
