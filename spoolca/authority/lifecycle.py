"""CA renewal: a new certificate for a CA's same key and subject.

Every certificate the CA issued keeps verifying, with the old certificate or the new
one (same subject, same key, so the same SKI that their AKI names), and its CRLs go on
as before. The guards, as Let's Encrypt's ceremony tool has them: a child never outlives
its parent, and a CA's life is capped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.authority.unlock import token_key
from spoolca.config import Config
from spoolca.errors import SpoolcaError
from spoolca.keys.algorithms import (
    PublicKey,
    generate_like,
    read_passphrase,
    spki,
    write_private_key,
)
from spoolca.keys.token import TokenPool, generate_in_token, token_key_type
from spoolca.register.generations import base_name, current_name, generation, generation_name
from spoolca.register.generations import settings as generation_settings
from spoolca.register.store import Store, format_time
from spoolca.x509.issuer import IssuingCA, Signed, build_certificate, new_serial, sign_linted
from spoolca.x509.lint import CertificateLinter
from spoolca.x509.profiles import ca_extensions

__all__ = ["record_renewal", "rekey_intermediate", "renew_certificate", "summary"]


def renew_certificate(name: str, current: x509.Certificate, parent: IssuingCA,
                      child: x509.Certificate | None, days: int, now: dt.datetime,
                      linter: CertificateLinter | None, max_days: int) -> x509.Certificate:
    """A new certificate for CA NAME (its key and subject as CURRENT), signed by PARENT
    (the root; for the root itself, its own key). CHILD: the intermediate, which the
    renewed root must outlive."""
    if days > max_days:
        raise SpoolcaError(f"{days} days is longer than the {name} CA may live "
                           f"({max_days} days at most: [authorities.{name}] max_days)")
    not_before = now.replace(microsecond=0)
    not_after = not_before + dt.timedelta(days=days)
    self_signed = name == "root"
    if not self_signed and not_after > parent.certificate.not_valid_after_utc:
        raise SpoolcaError(f"the {name} CA would outlive the root it chains to (which ends "
                           f"{parent.certificate.not_valid_after_utc:%Y-%m-%d}): renew the "
                           "root first, or ask for fewer days")
    if child is not None and not_after < child.not_valid_after_utc:
        raise SpoolcaError(f"the root would end before the intermediate under it (which ends "
                           f"{child.not_valid_after_utc:%Y-%m-%d}): ask for more days")
    if not_after <= current.not_valid_after_utc:
        raise SpoolcaError(f"the {name} CA's certificate already lasts until "
                           f"{current.not_valid_after_utc:%Y-%m-%d}: a renewal must end later")
    path_length = current.extensions.get_extension_for_class(x509.BasicConstraints
                                                             ).value.path_length
    builder = build_certificate(
        subject=current.subject, public_key=current.public_key(),  # type: ignore[arg-type]
        issuer=current.subject if self_signed else parent.certificate.subject,
        serial=new_serial(lambda _s: False), not_before=not_before, not_after=not_after,
        extensions=ca_extensions(current.public_key(),  # type: ignore[arg-type]
                                 None if self_signed else parent.certificate, path_length))
    signed: Signed = sign_linted(builder, parent.signer, parent.lint_signer, linter)
    if signed.certificate is None:
        raise SpoolcaError(f"the renewed {name} certificate failed the lint: "
                           + "; ".join(f.message for f in signed.findings))
    return signed.certificate


def summary(cert: x509.Certificate) -> dict[str, str]:
    return {"cert_sha256": cert.fingerprint(hashes.SHA256()).hex(),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}


def rekey_intermediate(config: Config, store: Store,
                       generations: dict[str, x509.Certificate], root: IssuingCA, days: int,
                       now: dt.datetime, linter: CertificateLinter | None, actor: str,
                       tokens: TokenPool) -> tuple[str, x509.Certificate]:
    """A new generation of the intermediate: a new key (of the current one's type) and a
    certificate for it with the same subject, signed by the root; it issues from now on.
    The older generation stays in the register under its name, keeps its key, and
    publishes its CRL until its last certificate has expired. ROOT: unlocked by the CA
    session, which has signed the audit trail so far."""
    cap = config.authorities["intermediate"].max_days
    if days > cap:
        raise SpoolcaError(f"{days} days is longer than the intermediate CA may live "
                           f"({cap} days at most: [authorities.intermediate] max_days)")
    old_name = current_name(store, "intermediate")
    old = generations[old_name]
    new_name = generation_name("intermediate", max(generation(n) for n in generations
                                                   if base_name(n) == "intermediate") + 1)
    not_after = now.replace(microsecond=0) + dt.timedelta(days=days)
    if not_after > root.certificate.not_valid_after_utc:
        raise SpoolcaError(f"the new intermediate would outlive the root (which ends "
                           f"{root.certificate.not_valid_after_utc:%Y-%m-%d}): renew the root "
                           "first, or ask for fewer days")
    public, persist = _new_key(config, new_name, old, tokens)
    new_spki = spki(public)
    if any(spki(cert.public_key()) == new_spki for cert in generations.values()):
        raise SpoolcaError("the new key equals a key the register already holds: not re-used")
    not_before = now.replace(microsecond=0)
    path_length = old.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    builder = build_certificate(
        subject=old.subject, public_key=public, issuer=root.certificate.subject,
        serial=new_serial(lambda _s: False), not_before=not_before, not_after=not_after,
        extensions=ca_extensions(public, root.certificate, path_length))
    signed: Signed = sign_linted(builder, root.signer, root.lint_signer, linter)
    if signed.certificate is None:
        raise SpoolcaError("the new intermediate certificate failed the lint: "
                           + "; ".join(f.message for f in signed.findings))
    persist()
    last_leaf = store.last_not_after(old_name) or format_time(now)
    with store.transaction(actor, now, signing="CA certificate") as tx:
        tx.add_authority(new_name, "root", signed.certificate.public_bytes(Encoding.DER))
        tx.set_meta("current.intermediate", new_name)
        tx.set_meta(f"last_leaf.{old_name}", last_leaf)
        tx.record("ca.rekeyed", {"authority": "intermediate", "old": old_name,
                                 "new": new_name, "old_certificate": summary(old),
                                 "new_certificate": summary(signed.certificate),
                                 "new_spki_sha256": hashlib.sha256(new_spki).hexdigest(),
                                 "old_crl_until": last_leaf})
    return new_name, signed.certificate


def _new_key(config: Config, name: str, old: x509.Certificate, tokens: TokenPool
             ) -> tuple[PublicKey, Callable[[], None]]:
    """The new generation's key, like the old one: made in the token that holds the
    intermediate's key (labelled LABEL-gN), or in memory and, by the returned step, written
    to its key file (encrypted) once its certificate exists."""
    passphrase = read_passphrase(config.passphrase_credential, config.passphrase_file)
    where = token_key(config, name)
    if where is not None:  # in the CA session's token sessions (one login per token)
        public = generate_in_token(tokens, where, token_key_type(old.public_key()),
                                   passphrase)
        return public, lambda: None
    key = generate_like(old.public_key())  # type: ignore[arg-type]
    path = generation_settings(config, name).key
    return key.public_key(), lambda: write_private_key(path, key, passphrase)


def record_renewal(store: Store, name: str, current: x509.Certificate,
                   renewed: x509.Certificate, moment: dt.datetime) -> None:
    """The CA's new certificate in the register (its current generation's row: after a
    rekey, gN) and the audit log, in one transaction."""
    with store.transaction("cli", moment, signing="CA certificate") as tx:
        tx.replace_authority(current_name(store, name), renewed.public_bytes(Encoding.DER))
        tx.record("ca.renewed", {"authority": name, "old": summary(current),
                                 "new": summary(renewed), "same_key": True})
