"""`spoolca init --ceremony FILE [--rehearse]`: a key ceremony declared in advance.

The file says everything init would be told on its command line, so the ceremony can be
reviewed by others before the day and rehearsed (`--rehearse`: the same steps in a
temporary directory with throwaway keys and a throwaway passphrase, clearly marked), as
Let's Encrypt rehearses its ceremonies. Parsing is strict: an unknown key, a wrong type
or a missing subject is refused with every problem listed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from spoolca.config.tomlreader import TableReader
from spoolca.errors import ConfigError
from spoolca.host.fsutil import write_new
from spoolca.keys import KEY_TYPES

__all__ = ["apply_ceremony"]

_CA_KEYS = {"dir", "root_subject", "intermediate_subject", "key_type", "root_days",
            "intermediate_days", "passphrase_file", "encrypted", "key_store",
            "intermediate_key_store", "key_label"}
_PKCS11_KEYS = {"module", "token"}
_URL_KEYS = ("root_crl", "root_issuer", "intermediate_crl", "intermediate_issuer")
_STORES = ("file", "pkcs11")
_SHARE_KEYS = {"scheme", "custodians", "out"}


def apply_ceremony(args: argparse.Namespace) -> None:
    """Fill init's arguments from the ceremony file (and, rehearsing, make them safe)."""
    path = Path(args.ceremony)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [f"not a readable TOML ceremony file: {exc}"]) from None
    reader = TableReader()
    reader.unknown(raw, {"ca", "shares", "pkcs11", "urls"}, "")
    urls = reader.table(raw, "urls", "")
    reader.unknown(urls, set(_URL_KEYS), "urls.")
    for key in _URL_KEYS:
        setattr(args, f"{key}_url", reader.get(urls, key, str, getattr(args, f"{key}_url"),
                                               "urls."))
    ca, shares = reader.table(raw, "ca", ""), reader.table(raw, "shares", "")
    reader.unknown(ca, _CA_KEYS, "ca.")
    reader.unknown(shares, _SHARE_KEYS, "shares.")
    _key_stores(reader, ca, reader.table(raw, "pkcs11", ""), args)
    for key in ("dir", "root_subject"):
        if not isinstance(ca.get(key), str):
            reader.problems.append(f"ca.{key}: required (a string)")
    args.dir = reader.get(ca, "dir", str, "", "ca.")
    args.root_subject = reader.get(ca, "root_subject", str, "", "ca.")
    args.intermediate_subject = reader.get(ca, "intermediate_subject", str, None, "ca.")
    args.key_type = reader.get(ca, "key_type", str, args.key_type, "ca.")
    if args.key_type not in KEY_TYPES:
        reader.problems.append(f"ca.key_type: one of {', '.join(KEY_TYPES)}")
    args.root_days = reader.positive(ca, "root_days", args.root_days, "ca.")
    args.intermediate_days = reader.positive(ca, "intermediate_days", args.intermediate_days,
                                             "ca.")
    args.passphrase_file = reader.get(ca, "passphrase_file", str, None, "ca.")
    args.no_passphrase = not reader.get(ca, "encrypted", bool, True, "ca.")
    if shares:
        from spoolca.commands.shares import scheme

        try:
            args.shares = scheme(reader.get(shares, "scheme", str, "", "shares."))
        except argparse.ArgumentTypeError as exc:
            reader.problems.append(f"shares.scheme: {exc}")
        args.custodian = list(reader.strings(shares, "custodians", "shares."))
        args.shares_out = reader.get(shares, "out", str, None, "shares.")
    if reader.problems:
        raise ConfigError(str(path), reader.problems)
    if args.rehearse:
        _rehearsal(args)


def _key_stores(reader: TableReader, ca: dict[str, Any], pkcs11: dict[str, Any],
                args: argparse.Namespace) -> None:
    """[ca] key_store / intermediate_key_store / key_label and the [pkcs11] token."""
    reader.unknown(pkcs11, _PKCS11_KEYS, "pkcs11.")
    args.key_store = reader.get(ca, "key_store", str, args.key_store, "ca.")
    args.intermediate_key_store = reader.get(ca, "intermediate_key_store", str,
                                             args.intermediate_key_store, "ca.")
    for key in ("key_store", "intermediate_key_store"):
        if getattr(args, key) not in (*_STORES, None):
            reader.problems.append(f"ca.{key}: \"file\" or \"pkcs11\"")
    args.key_label = reader.get(ca, "key_label", str, args.key_label, "ca.")
    args.pkcs11_module = reader.get(pkcs11, "module", str, args.pkcs11_module, "pkcs11.")
    args.token = reader.get(pkcs11, "token", str, args.token, "pkcs11.")
    if "pkcs11" in (args.key_store, args.intermediate_key_store) and not (
            args.pkcs11_module and args.token):
        reader.problems.append("pkcs11: module and token are required for a key in a token")


def _rehearsal(args: argparse.Namespace) -> None:
    """The same ceremony in a fresh temporary directory, with a throwaway passphrase, share
    folder and (for token keys) SoftHSM2 token: nothing of the real one is read, written
    or made, and the real HSM is never opened."""
    place = Path(tempfile.mkdtemp(prefix="spoolca-rehearsal-"))
    args.dir = str(place / "ca")
    if not args.no_passphrase:
        throwaway = place / "throwaway-passphrase"
        pin = secrets.token_urlsafe(24).encode()
        write_new(throwaway, pin, 0o600)
        args.passphrase_file = str(throwaway)
        if "pkcs11" in (args.key_store, args.intermediate_key_store):
            from spoolca.keys.softhsm import make_token, softhsm_module

            args.pkcs11_module = str(softhsm_module())
            conf = make_token(place / "softhsm", args.token, pin)
            os.environ["SOFTHSM2_CONF"] = str(conf)  # this process's SoftHSM: the throwaway
            args.rehearsal_token = conf
    if args.shares:
        args.shares_out = str(place / "shares")
