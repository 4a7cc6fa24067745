"""CAs built once per test process and copied per test.

`spoolca init` with an encrypted key takes ~3 s (the key files' KDF, the audit key's
generation in gpg), and a populated CA (issued, rekeyed) more; most tests then only read
or extend it. So each kind is made once, by the real command line, and every test gets a
copy of its own: the same bytes a fresh init would have written, but for the passphrase
file's path in the configuration, which names the test's own file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from spoolca.keys.openpgp import stop_agent
from tests.pki import CA, CREATED, PASSPHRASE, cheapen_audit_key, copy_ca, init_ca

__all__ = ["Templates"]


class Templates:
    """The process's templates, under ROOT (a session temporary directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[str, Path] = {}

    def encrypted(self, tmp_path: Path, secret: bytes = PASSPHRASE, *, name: str = "ca",
                  secret_name: str = "pw", kind: str = "",
                  populate: Callable[[CA], None] | None = None) -> CA:
        """A copy in TMP_PATH/NAME of a CA whose keys are encrypted with SECRET, read
        from TMP_PATH/SECRET_NAME (written here, 0600). KIND names a populated variant,
        made once by POPULATE on the template."""
        key = f"{secret.hex()}-{kind}"
        if key not in self._built:
            self._built[key] = self._build(secret, populate)
        template = self._built[key]
        passphrase = tmp_path / secret_name
        passphrase.write_bytes(secret)
        passphrase.chmod(0o600)
        ca = copy_ca(template / "ca", tmp_path / name)
        ca.edit_config(f'file = "{template / "pw"}"', f'file = "{passphrase}"')
        return ca

    def close(self) -> None:
        for template in self._built.values():
            stop_agent(template / "ca" / "gnupg")

    def _build(self, secret: bytes, populate: Callable[[CA], None] | None) -> Path:
        template = self.root / f"t{len(self._built)}"
        template.mkdir()
        (template / "pw").write_bytes(secret)
        (template / "pw").chmod(0o600)
        ca = init_ca(template / "ca", "--passphrase-file", str(template / "pw"))
        CREATED.remove(ca.dir)  # stopped at the session's end, not the first test's
        cheapen_audit_key(ca, secret)
        if populate is not None:
            populate(ca)
        stop_agent(ca.dir / "gnupg")
        return template
