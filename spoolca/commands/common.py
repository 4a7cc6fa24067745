"""What every command shares: finding the configuration, opening the register, reading
a serial or a moment from the command line."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

from spoolca.config import Config, load_config
from spoolca.errors import SpoolcaError, UsageError
from spoolca.register.store import Store

# Where an operator's configuration goes, else where `init --dir /var/lib/spoolca` (the
# README's install, and the unit's --config) put it.
DEFAULT_CONFIGS = (Path("/etc/spoolca/spoolca.toml"), Path("/var/lib/spoolca/spoolca.toml"))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def config_path(args: argparse.Namespace) -> Path:
    if args.config:
        return Path(args.config)
    env = os.environ.get("SPOOLCA_CONFIG")
    if env:
        return Path(env)
    return next((p for p in DEFAULT_CONFIGS if p.exists()), DEFAULT_CONFIGS[0])


def load(args: argparse.Namespace) -> Config:
    return load_config(config_path(args))


@contextlib.contextmanager
def opened(args: argparse.Namespace) -> Iterator[tuple[Config, Store]]:
    config = load(args)
    store = Store.of(config)
    try:
        yield config, store
    finally:
        store.close()


def serial_arg(text: str, error: type[SpoolcaError] = SpoolcaError) -> str:
    """A serial from the command line, in the register's notation; `error` if not hex."""
    from spoolca.register.views import normalize_serial

    try:
        return normalize_serial(text)
    except ValueError as exc:
        raise error(str(exc)) from None


def parse_moment(text: str) -> dt.datetime:
    """ISO 8601 (2026-11-01, 2026-11-01T12:00:00Z, with an offset); naive times are UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is not a date: use ISO 8601, e.g. 2026-11-01T12:00:00Z"
                         ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
