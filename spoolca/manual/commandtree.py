"""The command line as data, read off the argparse tree that `spoolca` itself parses
with: each command's path, one-line summary, usage, arguments and examples."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from spoolca.cli import build_parser
from spoolca.cli.help import EXAMPLES, command_parsers

__all__ = ["Argument", "Command", "commands"]


@dataclass(frozen=True, slots=True)
class Argument:
    names: str   # "--dir DIR", "serial"
    help: str


@dataclass(frozen=True, slots=True)
class Command:
    path: str    # "", "init", "ca renew"
    summary: str
    usage: str
    arguments: tuple[Argument, ...]
    examples: tuple[str, ...]
    has_subcommands: bool


def _summaries(parser: argparse.ArgumentParser, path: str = "") -> dict[str, str]:
    """Each subcommand's help= text (argparse keeps it on a pseudo-action of its parent)."""
    found: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for pseudo in action._choices_actions:
                child_path = f"{path} {pseudo.dest}".strip()
                found[child_path] = pseudo.help or ""
                found.update(_summaries(action.choices[pseudo.dest], child_path))
    return found


def _argument(action: argparse.Action) -> Argument | None:
    if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
        return None
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    takes_value = action.nargs != 0
    if action.option_strings:
        names = ", ".join(f"{o} {metavar}" if takes_value else o
                          for o in action.option_strings)
    else:
        names = metavar
    text = action.help or ""
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        text = f"{text} (one of: {', '.join(map(str, action.choices))})".strip()
    return Argument(names, text)


def _usage(parser: argparse.ArgumentParser) -> str:
    """argparse's usage line, unwrapped (its width depends on the terminal)."""
    return re.sub(r"\s+", " ", parser.format_usage().removeprefix("usage: ")).strip()


def commands() -> list[Command]:
    parser = build_parser()
    summaries = _summaries(parser)
    found = []
    for path, each in command_parsers(parser):
        arguments = tuple(a for a in map(_argument, each._actions) if a is not None)
        nested = any(isinstance(a, argparse._SubParsersAction) for a in each._actions)
        found.append(Command(path, summaries.get(path, each.description or ""),
                             _usage(each), arguments, tuple(EXAMPLES[path]), nested))
    return found
