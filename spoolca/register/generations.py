"""CA generations: after `spoolca ca rekey intermediate`, the same CA under a new key.

The register keeps every generation as an authority of its own name: the first keeps
`intermediate`, the next ones are `intermediate-g2`, `intermediate-g3`; the current one
is named by the meta key `current.intermediate`. A generation's name is also its file
names: keys/NAME.key.pem, outgoing/crl/NAME.crl, outgoing/ca/NAME.pem, so what an older
generation published keeps its name (and the URLs its leaves carry keep answering with a
CRL that generation signed), and the new one's URLs get the same `-gN` (a configured
`http://pki.example.com/intermediate.crl` becomes `.../intermediate-g2.crl`). An older
generation no longer issues; it publishes CRLs until its last leaf has expired.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from spoolca.config import AUTHORITIES, AuthoritySettings, Config
from spoolca.register.store import Store, format_time

__all__ = ["base_name", "current_name", "generation", "generation_name", "live_names",
           "older_names", "settings"]

_NAME = re.compile(r"(root|intermediate)(?:-g([0-9]+))?")


def base_name(name: str) -> str:
    match = _NAME.fullmatch(name)
    return match.group(1) if match else name


def generation(name: str) -> int:
    match = _NAME.fullmatch(name)
    return int(match.group(2)) if match and match.group(2) else 1


def generation_name(base: str, number: int) -> str:
    return base if number == 1 else f"{base}-g{number}"


def current_name(store: Store, base: str) -> str:
    """The generation that issues now (the base name until the first rekey)."""
    return store.meta(f"current.{base}") or base


def older_names(store: Store, base: str) -> list[str]:
    current = current_name(store, base)
    return sorted((n for n in store.authority_names() if base_name(n) == base and n != current),
                  key=generation)


def live_names(store: Store, now: dt.datetime) -> list[str]:
    """Every generation that publishes a CRL: the current ones, and older ones until their
    last leaf has expired (recorded at the rekey: an older generation issues no more)."""
    names = [current_name(store, base) for base in AUTHORITIES]
    for base in AUTHORITIES:
        for name in older_names(store, base):
            last = store.meta(f"last_leaf.{name}")
            if last is not None and last > format_time(now):
                names.append(name)
    return names


def settings(config: Config, name: str) -> AuthoritySettings:
    """The configured settings of NAME's CA, with this generation's key file and URLs."""
    base = config.authorities[base_name(name)]
    if name == base.name:
        return base
    return dataclasses.replace(base, name=name, key=config.keys_dir / f"{name}.key.pem",
                               crl_url=_suffixed(base.crl_url, name, base.name),
                               issuer_url=_suffixed(base.issuer_url, name, base.name))


def _suffixed(url: str, name: str, base: str) -> str:
    """.../intermediate.crl -> .../intermediate-g2.crl; another last segment gets -g2."""
    if not url:
        return url
    head, _, last = url.rpartition("/")
    stem, dot, suffix = last.partition(".")
    stem = name if stem == base else f"{stem}{name[len(base):]}"
    return f"{head}/{stem}{dot}{suffix}"
