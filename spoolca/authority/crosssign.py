"""Cross-signing: our root vouches for another root, or asks another root to vouch for it.

A cross-certificate carries exactly the subject (same bytes) and public key of the
certificate it cross-signs, so a chain built for that CA verifies up to our root as well
as up to its own; its subjectKeyIdentifier is copied too, since path builders match it
against the authorityKeyIdentifier of the certificates below. The checks are the ones
Boulder's ceremony tool makes for a cross-certificate: the certificate to cross-sign is a
CA certificate whose own signature verifies (its holder has the key), it is not our root,
and the cross-certificate lives within both its issuer's and its own validity.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.errors import InternalError, SpoolcaError
from spoolca.keys.algorithms import PublicKey, generate_like, signature_hash, spki
from spoolca.notation import der
from spoolca.notation.dn import oneline
from spoolca.register.store import CertificateRecord, Store, format_time
from spoolca.x509.issuer import (
    IssuingCA,
    Signed,
    build_certificate,
    new_serial,
    serial_hex,
    sign_linted,
)
from spoolca.x509.lint import CertificateLinter
from spoolca.x509.profiles import ca_extensions

__all__ = ["MAX_CROSS_DAYS", "cross_request", "cross_sign", "raw_subject", "record_cross_request",
           "record_cross_signed"]

MAX_CROSS_DAYS = 10 * 366


def cross_sign(target: x509.Certificate, root: IssuingCA, days: int, now: dt.datetime,
               serial_taken: object, linter: CertificateLinter | None) -> x509.Certificate:
    """A certificate for TARGET's subject and key, issued by our root."""
    _check_target(target, root.certificate)
    if days > MAX_CROSS_DAYS:
        raise SpoolcaError(f"{days} days is longer than a cross-certificate may live "
                           f"({MAX_CROSS_DAYS} days at most)")
    not_before = now.replace(microsecond=0)
    not_after = min(not_before + dt.timedelta(days=days), root.certificate.not_valid_after_utc,
                    target.not_valid_after_utc)
    if not_after <= not_before:
        raise SpoolcaError("no validity is left: our root or the certificate to cross-sign "
                           "has ended")
    key: PublicKey = target.public_key()  # type: ignore[assignment]
    path_length = target.extensions.get_extension_for_class(x509.BasicConstraints
                                                            ).value.path_length
    extensions = [(value, critical) for value, critical in
                  ca_extensions(key, root.certificate, path_length, root.urls)
                  if not isinstance(value, x509.SubjectKeyIdentifier)]
    extensions.append((_ski(target), False))
    builder = build_certificate(
        subject=target.subject, public_key=key, issuer=root.certificate.subject,
        serial=new_serial(serial_taken),  # type: ignore[arg-type]
        not_before=not_before, not_after=not_after, extensions=extensions)
    signed: Signed = sign_linted(builder, root.signer, root.lint_signer, linter)
    if signed.certificate is None:
        raise SpoolcaError("the cross-certificate failed the lint: "
                           + "; ".join(f.message for f in signed.findings))
    made = signed.certificate
    if raw_subject(made) != raw_subject(target) or \
            spki(made.public_key()) != spki(target.public_key()):
        raise SpoolcaError("the cross-certificate's subject or key would differ from the "
                           "certificate it cross-signs (byte for byte); nothing was issued")
    return made


def raw_subject(cert: x509.Certificate) -> bytes:
    """The subject's DER exactly as the certificate carries it (not re-encoded)."""
    tbs = der.content(cert.tbs_certificate_bytes)
    fields = der.read_tlvs(tbs)
    _tag, start, end = fields[5 if fields[0][0] == 0xA0 else 4]
    return tbs[start:end]


def cross_request(root: IssuingCA) -> x509.CertificateSigningRequest:
    """A CSR of our root's subject and key, for another root to cross-sign ours with."""
    builder = (x509.CertificateSigningRequestBuilder().subject_name(root.certificate.subject)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=True,
                   crl_sign=True, encipher_only=False, decipher_only=False), critical=True))
    twin = generate_like(root.certificate.public_key())  # type: ignore[arg-type]
    trial = builder.sign(twin, signature_hash(root.certificate.public_key()))  # type: ignore[arg-type]
    info, algorithm = der.signed_parts(trial.public_bytes(Encoding.DER))
    # CertificationRequestInfo: version, subject, subjectPKInfo, attributes. The twin's
    # key is replaced by the root's: the token or key file only signs.
    fields = der.content(info)
    version, subject, _twin, attributes = der.read_tlvs(fields)
    request_info = der.sequence(fields[version[1]:subject[2]] + spki(root.certificate.public_key())
                                + fields[attributes[1]:attributes[2]])
    csr = x509.load_der_x509_csr(der.signed(request_info, algorithm,
                                            root.signer.sign_bytes(request_info)))
    if not csr.is_signature_valid:
        raise InternalError("the cross-signing request does not verify")
    return csr


def _check_target(target: x509.Certificate, ours: x509.Certificate) -> None:
    try:
        constraints = target.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise SpoolcaError("only a CA certificate can be cross-signed (it has no "
                           "basicConstraints CA:TRUE)")
    if target.subject == ours.subject or spki(target.public_key()) == spki(ours.public_key()):
        raise SpoolcaError("that is our own root: a root does not cross-sign itself")
    if target.issuer == target.subject:
        try:
            target.verify_directly_issued_by(target)
        except (InvalidSignature, ValueError, TypeError):
            raise SpoolcaError("the certificate to cross-sign does not verify with its own "
                               "key: whoever sent it may not hold that key") from None


def _ski(target: x509.Certificate) -> x509.SubjectKeyIdentifier:
    try:
        return target.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(target.public_key())


def record_cross_signed(store: Store, target: x509.Certificate, made: x509.Certificate,
                        moment: dt.datetime) -> str:
    """The cross-certificate in the register (on the root's CRL if revoked) and the audit
    log, in one transaction; its serial."""
    der = made.public_bytes(Encoding.DER)
    serial = serial_hex(made.serial_number)
    with store.transaction("cli", moment, signing="cross-certificate") as tx:
        tx.add_certificate(CertificateRecord(
            serial, "root", "cross:" + hashlib.sha256(der).hexdigest(), "cross",
            oneline(made.subject), format_time(made.not_valid_before_utc),
            format_time(made.not_valid_after_utc), der, None, None))
        tx.record("ca.cross_signed", {
            "serial": serial, "subject": oneline(made.subject),
            "cross_signed_sha256": hashlib.sha256(target.public_bytes(Encoding.DER)
                                                  ).hexdigest(),
            "cert_sha256": hashlib.sha256(der).hexdigest(),
            "not_after": format_time(made.not_valid_after_utc)})
    return serial


def record_cross_request(store: Store, request: x509.CertificateSigningRequest,
                         moment: dt.datetime) -> None:
    with store.transaction("cli", moment) as tx:
        tx.record("ca.cross_requested", {
            "csr_sha256": hashlib.sha256(request.public_bytes(Encoding.DER)).hexdigest()})
