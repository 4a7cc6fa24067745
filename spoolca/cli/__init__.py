"""The command line: parse, call, render. No logic of its own.

Exit status: 0 success, 1 the operation failed or found a problem, 2 usage or
configuration error. Expected errors are one sentence on stderr; rejections during
`process` are results, not failures. One module per command group registers its own
subcommands (founding, signing, register, stick, audit, ca, custody, ssh); the handlers live
in spoolca.commands and are imported only when their command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable, Sequence

from spoolca import __version__
from spoolca.cli import audit, ca, custody, founding, register, signing, ssh, stick
from spoolca.cli.help import add_epilogs
from spoolca.errors import SpoolcaError
from spoolca.log import configure_logging, record_traceback

__all__ = ["build_parser", "main"]

_GROUPS = (founding, signing, register, stick, audit, ca, custody, ssh)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoolca", description="An offline certificate "
                                     "authority driven by a spool directory.")
    parser.add_argument("--version", action="version", version=f"spoolca {__version__}")
    parser.add_argument("--config", metavar="PATH", help="configuration file (default: "
                        "$SPOOLCA_CONFIG, else /etc/spoolca/spoolca.toml, else "
                        "/var/lib/spoolca/spoolca.toml, where the install puts it)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _GROUPS:
        group.register(commands)
    add_epilogs(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(sys.stderr)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        from spoolca.commands.asowner import become_owner

        become_owner(args)  # root: as the state directory's owner, before touching it
        return func(args)
    except SpoolcaError as exc:
        print(f"spoolca: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("spoolca: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `spoolca list | head`: the reader had enough, as with cat
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.close()
        sys.stdout = io.StringIO()  # nothing left to flush at exit
        return 141
    except PermissionError as exc:  # a place the command may not use: not a bug
        print(f"spoolca: {_denied(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one sentence, and where its traceback was kept
        from spoolca.register.damage import damaged

        damage = damaged(exc)
        if damage is not None:  # a damaged disk is not a bug: what to do, and exit 3
            print(f"spoolca: {damage}", file=sys.stderr)
            return damage.exit_code
        where = record_traceback(exc)
        print(f"spoolca: unexpected error ({type(exc).__name__}: {exc}); this is a bug, "
              f"its traceback is in {where}", file=sys.stderr)
        return 1


def _denied(exc: PermissionError) -> str:
    """Permission denied, in a sentence that says who was denied and what to do."""
    from spoolca.host.privileges import helper

    where = exc.filename or "a file"
    text = f"permission denied: {where}"
    if helper() is not None:  # root's command, running as the state directory's owner
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
        text += (f"; root's commands run as {user}, the state directory's owner: give it "
                 f"a folder it may write (chown {user} FOLDER), or mount the stick for it "
                 f"(mount -o uid={user},gid={user} DEVICE DIR)")
    return text

