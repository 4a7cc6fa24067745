"""The manual's reference parts, made from the code: the command line (the argparse tree
and cli.help), the configuration (the template init writes), the finding codes
(findings.CODES), the audit events (register.events), the shipped certificate types
(config/certificate-types.toml) and the package map (each module's
docstring). Written as Markdown under docs/reference/ and docs/design/, and as man pages
(spoolca(1), spoolca.toml(5)) for the air-gapped host, which has `man` and no browser.

`python -m spoolca.manual DOCS_DIR` writes them; tests/test_manual.py fails when the
committed ones differ from what the code makes now.
"""

from __future__ import annotations

from pathlib import Path

from spoolca.host.fsutil import atomic_write, ensure_dir
from spoolca.manual.manpage import command_page, config_page
from spoolca.manual.reference import (
    audit_events_md,
    cli_md,
    configuration_md,
    findings_md,
    packages_md,
    profiles_md,
)

__all__ = ["generated", "write_all"]


def generated() -> dict[str, str]:
    """Every generated file, by its path under docs/."""
    return {
        "reference/cli.md": cli_md(),
        "reference/configuration.md": configuration_md(),
        "reference/findings.md": findings_md(),
        "reference/profiles.md": profiles_md(),
        "reference/audit-events.md": audit_events_md(),
        "design/packages.md": packages_md(),
        "man/spoolca.1": command_page(),
        "man/spoolca.toml.5": config_page(),
    }


def write_all(docs: Path) -> list[Path]:
    written = []
    for relative, text in generated().items():
        target = docs / relative
        ensure_dir(target.parent, 0o755)
        atomic_write(target, text.encode(), 0o644)
        written.append(target)
    return written
