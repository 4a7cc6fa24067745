"""The configuration file `init` writes: every setting, its default, and why.

Apart from the reader (spoolca.config) because writing it is init's business alone:
the daemon and the commands only read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

from spoolca.config import AUTHORITIES

__all__ = ["render_config"]


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(*, passphrase_file: str | None = None,
                  token_keys: Mapping[str, str] | None = None,
                  pkcs11: tuple[str, str] | None = None,
                  urls: Mapping[str, str] | None = None) -> str:
    """The configuration `init` writes: every setting, its default, and why.

    `token_keys` names the CAs whose key is in the token `pkcs11` (module, token label),
    with each key's label; `urls` the CAs' crl_url and issuer_url (root_crl, root_issuer,
    intermediate_crl, intermediate_issuer). config/spoolca.toml in the repository is the
    default text (a test keeps them identical).
    """
    passphrase_line = (f"file = {_toml_string(passphrase_file)}" if passphrase_file
                       else '# file = "/root/spoolca-passphrase"   # mode 0600, never in a spool')
    template = resources.files("spoolca.config").joinpath("template.toml").read_text()
    text = template.replace("@PASSPHRASE_LINE@", passphrase_line)
    for name in AUTHORITIES:
        label = (token_keys or {}).get(name)
        line = (f'key_store = "pkcs11"\nkey_label = {_toml_string(label)}' if label
                else f'key = "keys/{name}.key.pem"')
        text = text.replace(f"@{name.upper()}_KEY@", line)
    for key in ("root_crl", "root_issuer", "intermediate_crl", "intermediate_issuer"):
        text = text.replace(f"@{key.upper()}_URL@", _toml_string((urls or {}).get(key, "")))
    lines = (f"module = {_toml_string(pkcs11[0])}\ntoken = {_toml_string(pkcs11[1])}"
             if pkcs11 else '# module = "/usr/lib/softhsm/libsofthsm2.so"\n# token = "spoolca"')
    return text.replace("@PKCS11_LINES@", lines)
