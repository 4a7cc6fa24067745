"""The appliance's SSH certificate authorities: a user CA and a host CA, separate keys.

`spoolca ssh init` makes them (Ed25519, or ECDSA P-256/P-384), encrypted at rest with the
CA passphrase like the X.509 keys, records their public keys in the register and the audit
log, and publishes what OpenSSH takes (outgoing/ssh/, on every stick):

    user-ca.pub         sshd_config: TrustedUserCAKeys /etc/ssh/user-ca.pub
    known_hosts         @cert-authority * ssh-ed25519 AAAA... (the host CA, for clients)
    revoked-keys.krl    sshd_config: RevokedKeys /etc/ssh/revoked-keys.krl

Revocation (`spoolca ssh revoke`) marks certificates in the register and remakes the KRL
at once, its version strictly increasing.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    SSHCertificate,
    SSHCertPrivateKeyTypes,
    load_ssh_public_key,
)

from spoolca.config import Config
from spoolca.config.sshsettings import SSH_CAS
from spoolca.errors import KeyStoreError, NotFoundError, RevocationError, SpoolcaError
from spoolca.host.memory import no_core_dumps
from spoolca.keys.algorithms import load_private_key, read_passphrase, write_private_key
from spoolca.keys.token import (
    TokenKey,
    TokenPool,
    TokenSigner,
    generate_in_token,
    token_public_key,
)
from spoolca.register.store import Store, Tx, format_time
from spoolca.register.views import ssh_name
from spoolca.spool.outgoing import Outgoing
from spoolca.ssh.request import key_blob

__all__ = ["SSH_KEY_TYPES", "create_ssh_cas", "fold_ssh_result", "load_ssh_key",
           "publish_ssh_files", "revoke_ssh", "revoke_ssh_in", "ssh_public_line"]

SSH_KEY_TYPES = ("ed25519", "ecdsa-p256", "ecdsa-p384")


def _public_key_meta(ca: str) -> str:
    return f"ssh_ca_public:{ca}"


def ssh_public_line(store: Store, ca: str) -> str | None:
    """The CA's public key line as the register recorded it at `ssh init`."""
    return store.meta(_public_key_meta(ca)) or None


def _generate(key_type: str) -> SSHCertPrivateKeyTypes:
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    curve = {"ecdsa-p256": ec.SECP256R1(), "ecdsa-p384": ec.SECP384R1()}[key_type]
    return ec.generate_private_key(curve)


def create_ssh_cas(config: Config, store: Store, outgoing: Outgoing, now: dt.datetime,
                   key_type: str, tokens: TokenPool) -> dict[str, str]:
    """Make the user and host CA keys (refused if the register has them already), record
    their public keys, publish the OpenSSH files. {ca: public key line}."""
    if config.ssh is None:
        raise SpoolcaError("SSH is not configured: add an [ssh] table to spoolca.toml "
                           "(config/spoolca.toml shows one), then run spoolca ssh init")
    if key_type not in SSH_KEY_TYPES:
        raise SpoolcaError(f"{key_type!r} is not an SSH CA key type: {', '.join(SSH_KEY_TYPES)}")
    existing = [ca for ca in SSH_CAS if ssh_public_line(store, ca)]
    if existing:
        raise SpoolcaError(f"the SSH {' and '.join(existing)} CA(s) exist already; nothing "
                           "was made")
    in_token = config.ssh.key_store == "pkcs11"
    if in_token and key_type not in _TOKEN_TYPES:
        raise SpoolcaError(f"an SSH CA key in a token is {' or '.join(_TOKEN_TYPES)}: "
                           "tokens disagree on Ed25519 (keys.token)")
    no_core_dumps()
    passphrase = read_passphrase(config.passphrase_credential, config.passphrase_file)
    lines = {}
    for ca in SSH_CAS:
        if in_token:
            public = generate_in_token(tokens, _token_key(config, ca), _TOKEN_TYPES[key_type],
                                       passphrase)
        else:
            key = _generate(key_type)
            write_private_key(config.ssh.keys[ca], key, passphrase)
            public = key.public_key()
        lines[ca] = public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    with store.transaction("cli", now, signing="SSH CA") as tx:
        for ca, line in lines.items():
            tx.set_meta(_public_key_meta(ca), line)
        tx.record("ssh.ca_created", {
            "key_type": key_type, "user_ca": lines["user"], "host_ca": lines["host"],
            "key_store": config.ssh.key_store,
            "tokens": {ca: _token_key(config, ca).describe() for ca in SSH_CAS}
            if in_token else None, "encrypted": passphrase is not None or in_token})
    publish_ssh_files(store, outgoing, now)
    return lines


def load_ssh_key(config: Config, store: Store, ca: str, tokens: TokenPool
                 ) -> SSHCertPrivateKeyTypes | TokenSigner:
    """Unlock one SSH CA's key (a file, or a session on its token), checked against the
    public key the register recorded (CASession.ssh_key is the one caller: the session
    alone unlocks keys)."""
    line = ssh_public_line(store, ca)
    if config.ssh is None or line is None:
        raise KeyStoreError("no SSH CA was made: run spoolca ssh init")
    no_core_dumps()  # before any secret is read
    passphrase = read_passphrase(config.passphrase_credential, config.passphrase_file)
    recorded = key_blob(load_ssh_public_key(line.encode()))
    if config.ssh.key_store == "pkcs11":
        where = _token_key(config, ca)
        session = tokens.session(where, passphrase)
        signer = TokenSigner(session, where, token_public_key(session, where))
        if key_blob(signer.public_key) != recorded:
            raise KeyStoreError(f"the token key {where.uri} is not the SSH {ca} CA the "
                                "register recorded")
        return signer
    key = load_private_key(config.ssh.keys[ca], passphrase)
    if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)) or \
            key_blob(key.public_key()) != recorded:
        raise KeyStoreError(f"the key {config.ssh.keys[ca]} is not the SSH {ca} CA the "
                            "register recorded")
    return key


_TOKEN_TYPES = {"ecdsa-p256": "ec-p256", "ecdsa-p384": "ec-p384"}


def _token_key(config: Config, ca: str) -> TokenKey:
    assert config.ssh is not None and config.pkcs11_module is not None
    return TokenKey(config.pkcs11_module, config.pkcs11_token, config.ssh.labels[ca])


def publish_ssh_files(store: Store, outgoing: Outgoing, now: dt.datetime) -> None:
    """outgoing/ssh/: the CA public keys in OpenSSH's forms and the current KRL."""
    user, host = ssh_public_line(store, "user"), ssh_public_line(store, "host")
    if user is None or host is None:
        return
    revoked = [(key_blob(load_ssh_public_key(line.encode())), store.ssh_revoked(ca), ())
               for ca, line in (("user", user), ("host", host))]
    version = int(store.meta("ssh_krl_version") or "0")
    from spoolca.ssh.krl import encode_krl

    outgoing.ssh_files({
        "user-ca.pub": f"{user} spoolca-user-ca\n".encode(),
        "host-ca.pub": f"{host} spoolca-host-ca\n".encode(),
        "known_hosts": f"@cert-authority * {host} spoolca-host-ca\n".encode(),
        "revoked-keys.krl": encode_krl(revoked, version=version, generated=now)})


def revoke_ssh(store: Store, outgoing: Outgoing, now: dt.datetime, ca: str, which: str,
               actor: str) -> list[int]:
    """Revoke CA's certificates by serial (decimal) or key ID; the KRL is remade. The
    serials revoked; NotFoundError or RevocationError (already revoked), nothing changed."""
    with store.transaction(actor, now, signing="SSH revocation") as tx:
        serials = revoke_ssh_in(tx, store, ca, which, None)
    publish_ssh_files(store, outgoing, now)
    return serials


def revoke_ssh_in(tx: Tx, store: Store, ca: str, which: str, requested_by: str | None,
                  reason: str | None = None) -> list[int]:
    """In the caller's transaction: revoke_ssh without the KRL (the caller publishes it
    once committed, by publish_ssh_files)."""
    if ca not in SSH_CAS:
        raise NotFoundError(f"{ca!r} is not an SSH CA (user or host)", serial=which)
    found = store.ssh_certificates(ca, serial=int(which)) if which.isdigit() else []
    found = found or store.ssh_certificates(ca, key_id=which)
    if not found:
        raise NotFoundError(f"no SSH {ca} certificate with serial or key ID {which!r}",
                            serial=which)
    live = [c for c in found if not c["revoked_at"]]
    if not live:
        raise RevocationError(f"the SSH {ca} certificate {which!r} is revoked already",
                              serial=which)
    serials = [int(c["serial"]) for c in live]
    tx.revoke_ssh(ca, serials)
    tx.set_meta("ssh_krl_version", str(int(store.meta("ssh_krl_version") or "0") + 1))
    tx.record("ssh.revoked", {"ca": ca, "serials": serials,
                              "key_ids": sorted({c["key_id"] for c in live}),
                              "principals": sorted({p for c in live
                                                    for p in json.loads(c["principals"])}),
                              "requested_by": requested_by, "reason": reason})
    return serials

def fold_ssh_result(tx: Tx, store: Store, folder: Path, result: dict[str, Any]) -> str | None:
    """Catch-up: an SSH certificate a copy of outgoing/ holds and the register (restored
    from a backup) does not, folded back, so that it can be listed and revoked and a
    request sent again gets it, not a second one. Only one our CA signed and that is
    what result.json says. None, or why it was not folded."""
    from cryptography.hazmat.primitives.serialization import load_ssh_public_identity

    from spoolca.host.untrusted import read_untrusted

    ca, name = str(result.get("ssh_ca")), folder.name
    line = ssh_public_line(store, ca)
    read = read_untrusted(folder / f"{name}-cert.pub", 64 * 1024)
    if line is None or read.data is None:
        return f"{name}: its SSH CA is not in this register, or no {name}-cert.pub"
    try:
        cert = load_ssh_public_identity(read.data)
        assert isinstance(cert, SSHCertificate)
        cert.verify_cert_signature()
        signed_by_us = key_blob(cert.signature_key()) == key_blob(
            load_ssh_public_key(line.encode()))
    except Exception as exc:  # untrusted bytes: whatever the parser raises is a refusal
        return f"{name}: not a readable SSH certificate ({type(exc).__name__})"
    if not signed_by_us or cert.serial != result.get("serial"):
        return f"{name}: its SSH certificate is not signed by this CA, or not the result's"
    if tx.ssh_serial_taken(ca, cert.serial):
        return None
    principals = [p.decode() for p in cert.valid_principals]
    request = str(result.get("request_sha256", ""))
    tx.add_ssh_certificate(ca, cert.serial, cert.key_id.decode(), json.dumps(principals),
                           str(result.get("profile", "")), request,
                           format_time(dt.datetime.fromtimestamp(cert.valid_after, dt.UTC)),
                           format_time(dt.datetime.fromtimestamp(cert.valid_before, dt.UTC)),
                           read.data.decode().strip())
    if tx.find_request(request) is None and not tx.output_owners(name):
        tx.add_submission(request, str(result.get("file", name)), name,
                          str(result.get("profile", "")), "issued", [],
                          serial=ssh_name(ca, cert.serial))
    return None
