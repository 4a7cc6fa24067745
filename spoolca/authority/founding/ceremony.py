"""`spoolca init`: the key ceremony that creates the root and intermediate CAs.

It refuses to touch a directory that already holds a CA, writes keys once (O_EXCL,
mode 0400, encrypted unless the operator explicitly opted out), lints both CA
certificates before they exist, and records the ceremony as the first audit entries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from spoolca.authority.founding.newkeys import KeyPlan, NewCAKey, make_ca_keys
from spoolca.authority.revocation import publish_crls
from spoolca.config import Config, load_config
from spoolca.config.text import render_config
from spoolca.errors import AlreadyInitializedError, SpoolcaError
from spoolca.host.fsutil import PRIVATE_DIR, atomic_write, ensure_dir, fsync_dir, sync_filesystem
from spoolca.host.memory import no_core_dumps
from spoolca.keys.algorithms import PublicKey, describe_key, spki
from spoolca.keys.filekey import lint_twin
from spoolca.keys.openpgp import ApplianceKey, check_home_length, stop_agent
from spoolca.keys.token import TokenPool
from spoolca.notation.dn import oneline
from spoolca.register.audit import checkpoint
from spoolca.register.store import Store, Tx
from spoolca.spool.outgoing import Outgoing
from spoolca.spool.results import ca_files
from spoolca.spool.tree import Spool
from spoolca.x509.crl import CRLLinter
from spoolca.x509.issuer import IssuingCA, Signed, build_certificate, new_serial, sign_linted
from spoolca.x509.lint import CertificateLinter
from spoolca.x509.profiles import CAURLs, ca_extensions

__all__ = ["CeremonyReport", "default_intermediate_subject", "found_ca", "init_ca",
           "refuse_existing", "sign_ca"]

ROOT_DAYS = 7305          # 20 years
INTERMEDIATE_DAYS = 3653  # 10 years


@dataclass(frozen=True, slots=True)
class CeremonyReport:
    """What init made, for the closing message."""

    directory: Path
    config: Path
    root: x509.Certificate
    intermediate: x509.Certificate
    encrypted: bool
    audit_fingerprint: str
    key_stores: dict[str, str]  # CA name: where its key is, for people to read


def default_intermediate_subject(root: x509.Name) -> x509.Name:
    """The root's subject with its CN renamed: "Example Root CA" -> "Example Intermediate CA".

    Keeping C, ST and O equal to the root's is what makes the seeds' policy_match work
    for requests that match the root's organisation.
    """
    attributes = []
    for rdn in root.rdns:
        for attr in rdn:
            if attr.oid == NameOID.COMMON_NAME:
                value = str(attr.value)
                renamed = value.replace("Root", "Intermediate") if "Root" in value \
                    else f"{value} Intermediate"
                attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, renamed))
            else:
                attributes.append(attr)  # type: ignore[arg-type]  # a subject's: str values
    return x509.Name(attributes)


def refuse_existing(directory: Path) -> None:
    for name in ("spoolca.toml", "ca.db", "keys"):
        if (directory / name).exists():
            raise AlreadyInitializedError(
                f"{directory} already holds a CA ({name} exists); init never overwrites one. "
                "Choose a new --dir")


def sign_ca(subject: x509.Name, key: PublicKey, issuer_cert: x509.Certificate | None,
             issuer: NewCAKey, days: int, path_length: int | None,
             now: dt.datetime, linter: CertificateLinter,
             urls: CAURLs | None = None) -> x509.Certificate:
    not_before = now.replace(microsecond=0)
    not_after = not_before + dt.timedelta(days=days)
    if issuer_cert is not None:
        not_after = min(not_after, issuer_cert.not_valid_after_utc)
    builder = build_certificate(
        subject=subject, public_key=key,
        issuer=issuer_cert.subject if issuer_cert else subject,
        serial=new_serial(lambda _s: False),
        not_before=not_before, not_after=not_after,
        extensions=ca_extensions(key, issuer_cert, path_length, urls or CAURLs()),
    )
    signed: Signed = sign_linted(builder, issuer.signer,
                                 lint_twin(issuer.public_key), linter)
    if signed.certificate is None:
        problems = "; ".join(f.message for f in signed.findings)
        raise SpoolcaError(f"failed to create the CA certificate {oneline(subject)}: {problems}")
    return signed.certificate


def _ca_summary(cert: x509.Certificate, key: NewCAKey) -> dict[str, object]:
    """What the audit log says of a new CA: never key material, only public facts."""
    return {
        "subject": oneline(cert.subject),
        "key": describe_key(key.public_key),
        "key_store": key.store,
        "cert_sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "spki_sha256": hashlib.sha256(spki(key.public_key)).hexdigest(),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def init_ca(directory: Path, *, root_subject: x509.Name, intermediate_subject: x509.Name,
            plan: KeyPlan, passphrase: bytes | None, passphrase_file: str | None,
            root_days: int = ROOT_DAYS, intermediate_days: int = INTERMEDIATE_DAYS,
            now: dt.datetime, urls: dict[str, str] | None = None) -> CeremonyReport:
    """Create a new CA in `directory`: keys, certificates, config, register, spool.
    URLS (root_crl, root_issuer, intermediate_crl, intermediate_issuer): the root's go into
    the intermediate certificate, and all into the configuration.

    The gpg-agent the audit key's creation starts is stopped before this returns, also
    on failure: an agent left behind (as root, by an `init` run as root) would sign for
    any process of that user. So is every token session (logged out)."""
    no_core_dumps()  # the keys are made here
    refuse_existing(directory)
    if plan.in_token and passphrase is None:
        raise SpoolcaError("a key in a token needs the token's PIN: give --passphrase-file")
    tokens = TokenPool()
    try:
        return _ceremony(directory, root_subject=root_subject,
                         intermediate_subject=intermediate_subject, plan=plan, tokens=tokens,
                         passphrase=passphrase, passphrase_file=passphrase_file,
                         root_days=root_days, intermediate_days=intermediate_days, now=now,
                         urls=urls or {})
    finally:
        tokens.close()
        if (directory / "gnupg").is_dir():
            stop_agent(directory / "gnupg")


def _ceremony(directory: Path, *, root_subject: x509.Name, intermediate_subject: x509.Name,
              plan: KeyPlan, tokens: TokenPool, passphrase: bytes | None,
              passphrase_file: str | None, root_days: int, intermediate_days: int,
              now: dt.datetime, urls: dict[str, str]) -> CeremonyReport:
    check_home_length(directory / "gnupg")  # before anything is made
    if oneline(root_subject) == oneline(intermediate_subject):
        raise SpoolcaError("the root and intermediate subjects must differ")
    keys = make_ca_keys(plan, directory / "keys", tokens, passphrase)  # a token fails here
    linter = CertificateLinter()
    root_key, inter_key = keys["root"], keys["intermediate"]
    root = sign_ca(root_subject, root_key.public_key, None, root_key, root_days, None, now,
                   linter)
    inter = sign_ca(intermediate_subject, inter_key.public_key, root, root_key,
                    intermediate_days, 0, now, linter,
                    CAURLs(urls.get("root_crl", ""), urls.get("root_issuer", "")))
    token = (str(plan.token[0]), plan.token[1]) if plan.token and plan.in_token else None
    config_text = render_config(passphrase_file=passphrase_file,
                                token_keys=plan.token_labels(), pkcs11=token, urls=urls)
    return found_ca(directory, {"root": (root, root_key), "intermediate": (inter, inter_key)},
                    config_text=config_text, passphrase=passphrase, now=now,
                    event="ca.initialized", details={})


def found_ca(directory: Path, made: dict[str, tuple[x509.Certificate, NewCAKey]], *,
             config_text: str, passphrase: bytes | None, now: dt.datetime, event: str,
             details: dict[str, object],
             populate: Callable[[Tx], None] | None = None) -> CeremonyReport:
    """The appliance around two CA certificates and their keys: key files (0400,
    encrypted), configuration, audit key, register (`populate` adds to init's first
    transaction: an import's certificates), spool, CA files, first CRLs, sealed log."""
    check_home_length(directory / "gnupg")
    ensure_dir(directory, 0o750)
    keys_dir = ensure_dir(directory / "keys", PRIVATE_DIR)
    (root, root_key), (inter, inter_key) = made["root"], made["intermediate"]
    root_key.persist(keys_dir / "root.key.pem", passphrase)
    inter_key.persist(keys_dir / "intermediate.key.pem", passphrase)
    config_path = directory / "spoolca.toml"
    atomic_write(config_path, config_text.encode(), 0o640)
    atomic_write(directory / "signers.asc", b"# The ASCII-armored OpenPGP public keys of "
                 b"those who may sign requests: gpg --armor --export FINGERPRINT >> here\n")
    config = load_config(config_path)
    audit_key = ApplianceKey.create(config.gnupg_dir, passphrase,
                                    name=f"spoolca audit {_common_name(root)}")
    store = Store.of(config, create=True)
    try:
        with store.transaction(event.removeprefix("ca."), now) as tx:
            tx.add_authority("root", None, root.public_bytes(Encoding.DER))
            tx.add_authority("intermediate", "root", inter.public_bytes(Encoding.DER))
            tx.set_meta("config_sha256", config.sha256)
            tx.set_meta("audit_key_fingerprint", audit_key.fingerprint)
            if populate is not None:
                populate(tx)
            tx.record(event, {
                **details,
                "root": _ca_summary(root, root_key),
                "intermediate": _ca_summary(inter, inter_key),
                "keys_encrypted": passphrase is not None,
                "config_sha256": config.sha256,
                "audit_key_fingerprint": audit_key.fingerprint,
            })
        _first_publication(config, store, made, audit_key, now, event.removeprefix("ca."))
    finally:
        store.close()
        audit_key.close()
    # Every file of the new state directory on stable storage before init says it is done:
    # gpg makes its keyring and trustdb by rename without fsync, and a power cut in the
    # following seconds left a CA whose audit key had vanished (invariant 14).
    sync_filesystem([directory])
    fsync_dir(directory.resolve().parent)
    return CeremonyReport(directory, config_path, root, inter, passphrase is not None,
                          audit_key.fingerprint,
                          {name: key.store.get("uri") or key.store["path"]
                           for name, (_cert, key) in made.items()})


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else "CA"


def _first_publication(config: Config, store: Store,
                       made: dict[str, tuple[x509.Certificate, NewCAKey]],
                       audit_key: ApplianceKey, now: dt.datetime, actor: str) -> None:
    """The spool, and in outgoing/: the CA files, the first CRLs, the sealed log."""
    spool = Spool(config.spool_dir)
    spool.create(config.profiles)
    outgoing = Outgoing(spool.outgoing)
    outgoing.create()
    outgoing.ca_files(ca_files(made["root"][0], made["intermediate"][0]))
    _first_crls(config, store, made, outgoing, now, actor)
    checkpoint(store, audit_key, now)
    outgoing.audit_log(store, audit_key)


def _first_crls(config: Config, store: Store,
                made: dict[str, tuple[x509.Certificate, NewCAKey]], outgoing: Outgoing,
                now: dt.datetime, actor: str) -> None:
    """Both CAs publish an (empty) CRL from the start: relying parties can check at once."""
    authorities = {
        name: IssuingCA(name, cert, key.signer, CAURLs(),
                        lint_twin(key.public_key))
        for name, (cert, key) in made.items()}
    publish_crls(config, store, authorities, outgoing, now, ["root", "intermediate"],
                 CRLLinter(), actor)
