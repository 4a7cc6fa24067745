"""What every command group's parsers share: lazy handlers, common argument types."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["DEFAULT_ROOT_SUBJECT", "command", "identity_option", "positive", "shares_scheme"]

# Each command's module is imported only when that command runs: a read-only command
# must not pay for the daemon's, the linter's or gpg's imports at start-up.
DEFAULT_ROOT_SUBJECT = "/CN=spoolca Root CA"


def command(target: str) -> Callable[[argparse.Namespace], int]:
    """`module:function` in spoolca.commands, resolved when the command is run."""
    module, function = target.split(":")

    def run(args: argparse.Namespace) -> int:
        import importlib

        code: int = getattr(importlib.import_module(f"spoolca.commands.{module}"), function)(args)
        return code

    run.target = target  # type: ignore[attr-defined]  # for the test that resolves them all
    return run


def identity_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--identity", metavar="FILE",
                        help="the stick's UUID and label as root read them before mounting "
                        "(`blkid -p -o export DEVICE`); default: ask findmnt")


def shares_scheme(text: str) -> tuple[int, int]:
    from spoolca.commands.shares import scheme

    return scheme(text)


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value
