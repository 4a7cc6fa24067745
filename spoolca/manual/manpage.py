"""The man pages, spoolca(1) and spoolca.toml(5), in roff: what the air-gapped host can
read. Made from the same sources as the Markdown references, and dated by the release
(not by today) so that the same code always makes the same page."""

from __future__ import annotations

from spoolca import __version__
from spoolca.cli.help import EXIT_STATUS
from spoolca.config.text import render_config
from spoolca.manual.commandtree import commands

__all__ = ["command_page", "config_page"]

# Left-aligned, no hyphenation: usage lines and option names are read and copied.
_HEADER = '.TH {name} {section} "" "spoolca {version}" "spoolca manual"\n.ad l\n.nh\n'


def _text(text: str) -> str:
    """TEXT safe as roff running text: backslashes, hyphens, and a leading . or '."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line
                     for line in escaped.split("\n"))


def command_page() -> str:
    out = [_HEADER.format(name="SPOOLCA", section=1, version=__version__),
           ".SH NAME\nspoolca \\- an offline certificate authority driven by a spool "
           "directory\n",
           ".SH SYNOPSIS\n.B spoolca\n[\\fB\\-\\-config\\fR \\fIPATH\\fR] \\fICOMMAND\\fR "
           "[\\fIARGS\\fR]\n",
           ".SH DESCRIPTION\n" + _text(
               "CSRs arrive in the spool's incoming/ folder (from a USB stick: spoolca media "
               "ingest); the daemon (spoolca serve, the spoolca unit) checks each against "
               "the policy, signs it with a CA key that never leaves the host, and writes "
               "certificates, chain files, CRLs and a signed audit log under outgoing/, which "
               "spoolca media export writes back to the stick. Without --config the "
               "configuration is $SPOOLCA_CONFIG, else /etc/spoolca/spoolca.toml, else "
               "/var/lib/spoolca/spoolca.toml. Run as root on an installed appliance, a "
               "command runs as the state directory's owner, with the unit's credential "
               "when it needs the unlock secret.") + "\n",
           ".SH COMMANDS"]
    for command in commands():
        if not command.path or command.has_subcommands:
            continue
        out += [f".SS {_text(command.path)}", _text(command.summary) + ".", ".PP",
                f".B {_text('spoolca ' + command.usage.removeprefix('spoolca '))}"]
        for argument in command.arguments:
            out += [".TP", f"\\fB{_text(argument.names)}\\fR", _text(argument.help)]
        out += [".PP", "Example:", ".nf", *(f".RS\n{_text(e)}\n.RE" for e in command.examples),
                ".fi"]
    out.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS.items():
        out += [".TP", f"\\fB{code}\\fR", _text(text)]
    out += [".SH FILES", ".TP", "/var/lib/spoolca/spoolca.toml",
            "the configuration (see spoolca.toml(5))", ".TP", "/var/lib/spoolca/spool/",
            "incoming/, work/, outgoing/ and archive/", ".TP", "/var/lib/spoolca/ca.db",
            "the register and the audit log",
            ".SH SEE ALSO", "spoolca.toml(5), systemctl(1), openssl-verify(1); the guides "
            "under /usr/local/share/doc/spoolca/ (docs/ in the source)."]
    return "\n".join(out) + "\n"


def config_page() -> str:
    template = render_config()
    return "\n".join([
        _HEADER.format(name="SPOOLCA.TOML", section=5, version=__version__).rstrip("\n"),
        ".SH NAME", "spoolca.toml \\- the configuration of spoolca",
        ".SH DESCRIPTION", _text(
            "A TOML file: every setting with its default and why, exactly as spoolca init "
            "writes it (below). A setting not named here is refused when the file is "
            "loaded, with the key and the line. spoolca reload (the unit's ExecReload=) "
            "makes the daemon read it again; a file it refuses changes nothing."),
        ".SH FILE", ".nf", _text(template).rstrip("\n"), ".fi",
        ".SH SEE ALSO", "spoolca(1)", ""])
