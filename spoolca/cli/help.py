"""What every `--help` ends with: EXIT STATUS and EXAMPLES, per command.

The operator of an air-gapped machine has `--help`, `man` and the stick, no web page: so
each command says how it ends and shows itself used. The man pages (spoolca.manual) are
made from these same texts and the argparse tree, so the two never disagree.
"""

from __future__ import annotations

import argparse
import textwrap

__all__ = ["EXAMPLES", "EXIT_STATUS", "add_epilogs", "command_parsers"]

EXIT_STATUS = {
    0: "success (rejections during `process` are results, not failures)",
    1: "the operation failed or found a problem (a bad CSR in `policy check`, a wrong "
       "passphrase, the clock guard, a broken audit log); the reason is one sentence on "
       "stderr",
    2: "usage or configuration error (a missing option, an unreadable spoolca.toml)",
}

EXAMPLES: dict[str, list[str]] = {
    "": ["spoolca demo", "spoolca init --dir /var/lib/spoolca", "spoolca status"],
    "init": ["spoolca init --dir /var/lib/spoolca --root-subject '/C=US/O=Example/CN=Example "
             "Root CA'", "spoolca init --ceremony ceremony.toml --rehearse"],
    "import-openssl": ["spoolca import-openssl /root/ca --dir /var/lib/spoolca"],
    "import-easyrsa": ["spoolca import-easyrsa ~/easy-rsa/pki --dir /var/lib/spoolca"],
    "process": ["spoolca process"],
    "serve": ["systemctl start spoolca   # the unit runs spoolca serve"],
    "reload": ["systemctl reload spoolca   # the unit runs spoolca reload"],
    "list": ["spoolca list --expiring 30", "spoolca list --status revoked --json"],
    "backup": ["spoolca backup /media/backup/",
               "spoolca backup --verify /media/backup/spoolca-*.tar.gz --fingerprint FPR"],
    "restore": ["spoolca restore spoolca-20261207.tar.gz --dir /var/lib/spoolca-new "
                "--fingerprint FPR --catch-up /media/stick/spoolca-results"],
    "catch-up": ["spoolca catch-up /media/stick/spoolca-results"],
    "ca": ["spoolca ca renew intermediate"],
    "ca renew": ["spoolca ca renew intermediate --days 1826"],
    "ca rekey": ["spoolca ca rekey intermediate"],
    "ca cross-sign": ["spoolca ca cross-sign new-root.pem --days 730"],
    "ca cross-request": ["spoolca ca cross-request --out root-cross.csr"],
    "shares": ["spoolca shares split 3-of-5 --custodian ann --custodian bob --custodian "
               "cy --custodian dee --custodian eve --out /media/shares"],
    "shares split": ["spoolca shares split 2-of-3 --custodian ann --custodian bob "
                     "--custodian cy --out /media/shares"],
    "shares reshare": ["spoolca shares reshare 2-of-3 --custodian ann --custodian bob "
                       "--custodian dee --out /media/shares"],
    "shares rotate": ["spoolca shares rotate 2-of-3 --custodian ann --custodian bob "
                      "--custodian cy --out /media/shares --credential /etc/spoolca/secret"],
    "shares combine": ["spoolca shares combine --credential /etc/spoolca/secret"],
    "shares check": ["spoolca shares check ann.share bob.share"],
    "status": ["spoolca status", "spoolca status --json"],
    "revoke": ["spoolca revoke 1A2B3C --reason keyCompromise",
               "spoolca revoke 1A2B3C --reason superseded"],
    "renew": ["spoolca renew 1A2B3C"],
    "reconsider": ["spoolca reconsider www", "spoolca reconsider 9f86d081884c7d65..."],
    "crl": ["spoolca crl", "spoolca crl --extend --until 2027-09-01 --ca root",
            "spoolca crl --presign 3"],
    "audit": ["spoolca audit export", "spoolca audit verify --dir audit --fingerprint FPR"],
    "audit export": ["spoolca audit export /media/stick/audit"],
    "audit verify": ["spoolca audit verify --dir spoolca-results/audit --fingerprint FPR"],
    "audit show": ["spoolca audit show --event certificate.revoked",
                   "spoolca audit show --serial 1A2B3C --json"],
    "media": ["spoolca media ingest /media/stick --wait 60",
              "spoolca media export /media/stick"],
    "media ingest": ["spoolca media ingest /media/stick --wait 60"],
    "media export": ["spoolca media export /media/stick"],
    "ssh": ["spoolca ssh init", "spoolca ssh list --ca user"],
    "ssh init": ["spoolca ssh init --key-type ed25519"],
    "ssh revoke": ["spoolca ssh revoke --ca user 1234567890", "spoolca ssh revoke --ca host "
                   "web1-2027"],
    "ssh list": ["spoolca ssh list --ca host --json"],
    "trip": ["spoolca trip close --next 2027-02-01"],
    "trip close": ["spoolca trip close --next 2027-02-01",
                   "spoolca trip close --next 2027-06-01 --accept-lapse"],
    "verify-publication": ["spoolca verify-publication /srv/incoming/spoolca-results "
                           "--served /var/www/pki --fingerprint FPR"],
    "show": ["spoolca show 1a:2b:3c"],
    "export-index": ["spoolca export-index > index.txt"],
    "policy": ["spoolca policy check www.csr --profile server"],
    "policy check": ["spoolca policy check www.csr --profile server"],
    "policy check-profiles": ["spoolca policy check-profiles"],
    "clock": ["spoolca clock", "spoolca clock confirm --time 2026-12-07T09:30:00Z"],
    "clock status": ["spoolca clock status --json"],
    "clock confirm": ["spoolca clock confirm --time 2026-12-07T09:30:00Z"],
    "demo": ["spoolca demo", "spoolca demo --once --dir /tmp/spoolca-demo"],
}


def command_parsers(parser: argparse.ArgumentParser, path: str = ""
                    ) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (command path, parser) below PARSER, itself first: "", "init", "ca renew"..."""
    found = [(path, parser)]
    for action in parser._actions:  # argparse keeps its subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += command_parsers(child, f"{path} {name}".strip())
    return found


def epilog(path: str) -> str:
    lines = ["exit status:"]
    for code, text in EXIT_STATUS.items():
        lines += textwrap.wrap(text, 78, initial_indent=f"  {code}  ",
                               subsequent_indent="     ")
    lines += ["", "examples:"]
    lines += [f"  {example}" for example in EXAMPLES[path]]
    lines += ["", "man spoolca: every command; man spoolca.toml: the configuration"]
    return "\n".join(lines)


def add_epilogs(parser: argparse.ArgumentParser) -> None:
    """EXIT STATUS and EXAMPLES under each command's --help (a command with no examples
    is a KeyError here, so a new command cannot ship without them)."""
    for path, each in command_parsers(parser):
        each.epilog = epilog(path)
        each.formatter_class = argparse.RawDescriptionHelpFormatter
