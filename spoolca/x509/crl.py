"""Certificate revocation lists: reasons, entries, building, linting, signing. No I/O.

RFC 5280 5.3.1: the reasonCode entry extension is left out for `unspecified` rather
than written with that value.

Speed at 100,000 entries: an entry never changes once a certificate is revoked, so its
DER is encoded once, at revocation (`encode_entry`), and stored in the register. A CRL
is then cryptography's header and extensions (built with one placeholder entry and the
CA's throwaway twin) with the stored entries spliced into its to-be-signed list, signed
by the CA key. Before release it must parse with cryptography, verify with the CA's
public key and hold every entry; otherwise nothing is published (fail closed).

Before the CA key signs, pkilint's CRL validators check a specimen: the same issuer,
dates and extensions with one entry of every shape spoolca can write (each reason, with
and without an invalidity date). Entries differ only in serial and dates, so the
specimen stands for any list, and linting stays fast at any size.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.errors import InternalError, SpoolcaError
from spoolca.findings import Finding
from spoolca.keys.algorithms import verify_signature
from spoolca.notation import der
from spoolca.x509.issuer import IssuingCA

__all__ = ["MAX_CRL_BYTES", "MAX_CRL_NUMBER", "REASONS", "CRLLinter", "ReadCRL", "RevokedEntry",
           "Scope", "encode_entry", "read_crl", "sign_crl"]

# OpenSSL's names for the RFC 5280 5.3.1 reasons, as `openssl ca -crl_reason` takes them.
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "CACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "removeFromCRL": x509.ReasonFlags.remove_from_crl,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}
# RFC 5280 5.2.3: CRLNumber is at most 20 octets, so below 2^159 (the library does
# not check this for us).
MAX_CRL_NUMBER = 2**159 - 1
# RFC 5280 5.3.1 CRLReason codes (7 is unused).
_REASON_CODES = {"unspecified": 0, "keyCompromise": 1, "CACompromise": 2,
                 "affiliationChanged": 3, "superseded": 4, "cessationOfOperation": 5,
                 "certificateHold": 6, "removeFromCRL": 8, "privilegeWithdrawn": 9,
                 "aACompromise": 10}
_OID_CRL_REASON = bytes.fromhex("0603551d15")      # 2.5.29.21
_OID_INVALIDITY_DATE = bytes.fromhex("0603551d18")  # 2.5.29.24
_REASON_DER = {name: der.sequence(_OID_CRL_REASON, der.octets(der.tlv(0x0A, bytes([code]))))
               for name, code in _REASON_CODES.items()}

# Built once: 100,000 entries share a handful of reason extensions.
_REASON_EXTENSIONS = {name: x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(flag))
                      for name, flag in REASONS.items()}
_EARLIEST = dt.datetime(1950, 1, 1)


class Scope(enum.Enum):
    """What a CRL covers, as its issuingDistributionPoint says (RFC 5280 5.2.5): only CA
    certificates (an ARL: a root's), or only end-entity certificates (an issuing CA's).
    A relying party then refuses the CRL for a certificate outside it, so one CA's two
    kinds of certificate cannot be checked against the wrong list."""

    CA = "ca"
    USER = "user"


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One revoked certificate as the CRL lists it."""

    serial: int
    revoked_at: dt.datetime
    reason: str
    invalidity: dt.datetime | None = None



def encode_entry(entry: RevokedEntry) -> bytes:
    """The DER of one revokedCertificates entry: encoded once, at revocation."""
    if not 0 < entry.serial < 2**159:
        raise SpoolcaError(f"serial {entry.serial:X} cannot be listed on a CRL (RFC 5280)")
    extensions: list[bytes] = []
    if entry.reason != "unspecified":  # RFC 5280 5.3.1: absent rather than unspecified
        extensions.append(_REASON_DER[entry.reason])
    if entry.invalidity is not None:  # RFC 5280 5.3.2: always GeneralizedTime
        stamp = entry.invalidity.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ").encode()
        extensions.append(der.sequence(_OID_INVALIDITY_DATE, der.octets(der.tlv(0x18, stamp))))
    body = der.integer(entry.serial) + der.time(entry.revoked_at)
    return der.sequence(body + (der.sequence(*extensions) if extensions else b""))


def _revoked(entry: RevokedEntry) -> x509.RevokedCertificate:
    """One CRL entry, built in a single call.

    RevokedCertificateBuilder's setters validate and copy the builder at each step, which
    is most of the cost of a large CRL; the same checks are made here once, and the
    builder is constructed with everything at once.
    """
    if not 0 < entry.serial < 2**159:
        raise SpoolcaError(f"serial {entry.serial:X} cannot be listed on a CRL (RFC 5280)")
    revoked_at = entry.revoked_at.astimezone(dt.UTC).replace(tzinfo=None)
    if revoked_at < _EARLIEST:
        raise SpoolcaError(f"revocation date {revoked_at} is before 1950")
    extensions: list[x509.Extension[x509.ExtensionType]] = []
    if entry.reason != "unspecified":  # RFC 5280 5.3.1: absent rather than unspecified
        extensions.append(_REASON_EXTENSIONS[entry.reason])
    if entry.invalidity is not None:
        value = x509.InvalidityDate(entry.invalidity.astimezone(dt.UTC).replace(tzinfo=None))
        extensions.append(x509.Extension(value.oid, False, value))
    return x509.RevokedCertificateBuilder(entry.serial, revoked_at, extensions).build()


def _builder(issuer: x509.Certificate, revoked: list[x509.RevokedCertificate], number: int,
             this_update: dt.datetime, next_update: dt.datetime, scope: Scope | None = None
             ) -> x509.CertificateRevocationListBuilder:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (x509.CertificateRevocationListBuilder(revoked_certificates=revoked)
               .issuer_name(issuer.subject)
               .last_update(this_update)
               .next_update(next_update)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                   ski), critical=False)
               .add_extension(x509.CRLNumber(number), critical=False))
    if scope is not None:  # RFC 5280 5.2.5: a critical extension
        builder = builder.add_extension(x509.IssuingDistributionPoint(
            full_name=None, relative_name=None, only_contains_user_certs=scope == Scope.USER,
            only_contains_ca_certs=scope == Scope.CA, only_some_reasons=None,
            indirect_crl=False, only_contains_attribute_certs=False), critical=True)
    return builder


class CRLLinter:
    """pkilint's RFC 5280 CRL validators (as `lint_crl -t CRL -p PKIX`), built once."""

    def __init__(self) -> None:
        from pkilint import loader, pkix
        from pkilint.pkix import crl, extension, name

        self._validator = crl.create_pkix_crl_validator_container(
            [pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
             pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS)],
            [crl.create_issuer_validator_container([]),
             crl.create_validity_validator_container([]),
             crl.create_extensions_validator_container([])],
        )
        self._loader = loader.RFC5280CertificateListDocumentLoader()

    def lint(self, der: bytes) -> list[Finding]:
        """Every WARNING-or-worse finding, as lint.* findings; a crash is lint.fatal."""
        codes = {0: "lint.fatal", 1: "lint.error", 2: "lint.warning"}
        try:
            results = self._validator.validate(self._loader.load_der_document(der, "crl").root)
        except Exception as exc:  # a crashing linter must fail closed, whatever it raised
            return [Finding("lint.fatal", f"pkilint failed on the CRL: {exc}")]
        return [Finding(codes[int(d.finding.severity)],
                        f"pkilint {d.finding.code} at {result.node.path}"
                        + (f": {d.message}" if d.message else ""))
                for result in results for d in result.finding_descriptions
                if int(d.finding.severity) in codes]


def _specimen(moment: dt.datetime) -> list[RevokedEntry]:
    """One entry of every shape an entry can have: each reason, with and without an
    invalidity date (removeFromCRL is never listed: it lifts a hold)."""
    reasons = [reason for reason in REASONS if reason != "removeFromCRL"]
    return [RevokedEntry(serial, moment, reason, moment if dated else None)
            for serial, (reason, dated) in enumerate(
                ((r, d) for r in reasons for d in (False, True)), start=1)]


def _lint_specimen(ca: IssuingCA, number: int, this_update: dt.datetime,
                   next_update: dt.datetime, linter: CRLLinter, scope: Scope | None) -> None:
    specimen = [_revoked(entry) for entry in _specimen(this_update)]
    trial = ca.lint_signer.sign_crl(_builder(ca.certificate, specimen, number, this_update,
                                             next_update, scope))
    findings = linter.lint(trial.public_bytes(Encoding.DER))
    if findings:
        detail = "; ".join(f.message for f in findings)
        raise SpoolcaError(f"the {ca.name} CRL was not signed: lint found {detail}")


def sign_crl(ca: IssuingCA, entries: Sequence[bytes], *, number: int,
             this_update: dt.datetime, next_update: dt.datetime,
             linter: CRLLinter | None, scope: Scope | None = None) -> bytes:
    """The DER of a CRL holding `entries` (from encode_entry), signed by the CA key;
    SCOPE: its issuingDistributionPoint, if it covers one kind of certificate only."""
    if not 0 < number <= MAX_CRL_NUMBER:
        raise SpoolcaError(f"CRL number {number} is outside 1..2^159-1 (RFC 5280 5.2.3)")
    this_update, next_update = this_update.replace(microsecond=0), \
        next_update.replace(microsecond=0)
    if linter is not None:
        _lint_specimen(ca, number, this_update, next_update, linter, scope)
    placeholder = _revoked(RevokedEntry(1, this_update, "unspecified"))
    template = ca.lint_signer.sign_crl(_builder(ca.certificate, [placeholder], number,
                                                this_update, next_update, scope))
    tbs = der.content(template.tbs_certlist_bytes)
    fields = der.read_tlvs(tbs)
    # version, signature, issuer, thisUpdate, nextUpdate, revokedCertificates, [0] exts
    if len(fields) != 7 or fields[5][0] != 0x30 or fields[6][0] != 0xA0:
        raise InternalError("unexpected CRL layout from the library")
    _tag, start, end = fields[5]
    # RFC 5280 5.1.2.6: with no revoked certificate the list is absent, not empty.
    revoked = der.sequence(*entries) if entries else b""
    new_tbs = der.sequence(tbs[:start] + revoked + tbs[end:])
    _template_tbs, algorithm = der.signed_parts(template.public_bytes(Encoding.DER))
    signature = ca.signer.sign_bytes(new_tbs)
    encoded = der.signed(new_tbs, algorithm, signature)
    # Fail closed: cryptography must parse it with every entry, and the signature over the
    # to-be-signed bytes must verify with the CA's key. (is_signature_valid and
    # tbs_certlist_bytes re-encode the list: 0.1 s each at 100,000 entries.)
    crl = x509.load_der_x509_crl(encoded)
    if len(crl) != len(entries) or not verify_signature(
            ca.certificate.public_key(), signature, new_tbs):  # type: ignore[arg-type]
        raise InternalError(f"the {ca.name} CRL did not verify; not published")
    return encoded


MAX_CRL_BYTES = 64 << 20  # a CRL read from a stick or a web server: 100,000 entries fit


@dataclass(frozen=True)
class ReadCRL:
    """What is read of a CRL from untrusted bytes (a stick's, a web server's): every
    field a caller decides on, read at once."""

    crl: x509.CertificateRevocationList
    issuer: x509.Name
    number: int
    this_update: dt.datetime
    next_update: dt.datetime | None


def read_crl(data: bytes) -> ReadCRL | str:
    """The CRL in DER DATA, or why these bytes are not one (with a CRL number). The
    parser reads fields lazily and raises more than ValueError (InvalidVersion for a
    version 0, found by the fuzz test: tests/vectors/publication/), so every field is read
    here, in one place that turns whatever it raises into a reason."""
    try:
        crl = x509.load_der_x509_crl(data)
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        return ReadCRL(crl, crl.issuer, int(number), crl.last_update_utc, crl.next_update_utc)
    except Exception as exc:  # untrusted bytes: whatever the parser raises is a refusal
        return f"not a readable CRL ({type(exc).__name__}: {exc})"
