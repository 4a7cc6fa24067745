"""Extensions: what a certificate type (config/certtypes.py) says, as X.509.

The CSR never decides these (RFC 5280 4.2): only subjectAltName comes from the request,
and only after policy has passed its names. The type is data; the rules of the standard
(which extensions are critical, where key identifiers come from) are here.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID

from spoolca.config import CertificateType
from spoolca.config.constraints import PURPOSES, SubCAConstraints
from spoolca.keys.algorithms import PublicKey
from spoolca.notation.dn import parse_subject

__all__ = ["CAURLs", "Extension", "Grant", "ca_extensions", "grant", "leaf_extensions"]

Extension = tuple[x509.ExtensionType, bool]  # (value, critical)


@dataclass(frozen=True, slots=True)
class CAURLs:
    """Where relying parties fetch the issuer's CRL and certificate (empty: left out)."""

    crl_url: str = ""
    issuer_url: str = ""


_USAGE_BITS = ("digital_signature", "content_commitment", "key_encipherment",
               "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign")


def _key_usage(flags: Iterable[str]) -> x509.KeyUsage:
    """keyUsage with FLAGS set (cryptography's argument names); never encipher/decipher
    only, which narrow keyAgreement and no profile needs."""
    chosen = set(flags)
    return x509.KeyUsage(**{bit: bit in chosen for bit in _USAGE_BITS},
                         encipher_only=False, decipher_only=False)


_CA_USAGE = _key_usage({"key_cert_sign", "crl_sign"})  # a CA signs certificates and CRLs


def _ski(public_key: PublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


@functools.lru_cache(maxsize=8)
def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """keyid only (RFC 5280 4.2.1.1): issuer+serial would pin the chain to one issuer cert.

    Cached: the same few issuers sign thousands of certificates.
    """
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _distribution(urls: CAURLs) -> list[Extension]:
    extensions: list[Extension] = []
    if urls.crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl_url)],
                                       None, None, None)
        extensions.append((x509.CRLDistributionPoints([point]), False))
    if urls.issuer_url:
        access = x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                        x509.UniformResourceIdentifier(urls.issuer_url))
        extensions.append((x509.AuthorityInformationAccess([access]), False))
    return extensions


def ca_extensions(public_key: PublicKey, issuer: x509.Certificate | None,
                  path_length: int | None, urls: CAURLs = CAURLs(),
                  constraints: SubCAConstraints | None = None,
                  key_usage: x509.KeyUsage = _CA_USAGE) -> list[Extension]:
    """A CA certificate: root when issuer is None (no AKI needed), else subordinate,
    with what it may certify (a CA profile's constraints and key usage)."""
    extensions: list[Extension] = [
        # RFC 5280 4.2.1.9: critical in every CA certificate.
        (x509.BasicConstraints(ca=True, path_length=path_length), True),
        (key_usage, True),
        (_ski(public_key), False),
    ]
    if issuer is None:
        # RFC 5280 4.2.1.1 lets a self-signed root omit AKI, but pkilint flags it and
        # path builders use it: the root names its own key.
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(public_key))
        extensions.append((aki, False))
    else:
        extensions.append((_aki(issuer), False))
        extensions += _distribution(urls)
    if constraints is not None:
        extensions += _constraint_extensions(constraints)
    return extensions


def _subtrees(dns: tuple[str, ...], ips: tuple[str, ...], emails: tuple[str, ...]
              ) -> list[x509.GeneralName]:
    trees: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    trees += [x509.IPAddress(ipaddress.ip_network(n)) for n in ips]
    trees += [x509.RFC822Name(e) for e in emails]
    return trees


# RFC 6761 6.4: .invalid is never a real name. Permitting only a host there shuts a name
# form that cannot be excluded whole (OpenSSL has no "every e-mail address" or "every
# URI" base; pkilint wants a domain with a dot).
_NOWHERE = "nothing.invalid"


def _shut_forms(constraints: SubCAConstraints) -> tuple[list[x509.GeneralName],
                                                      list[x509.GeneralName]]:
    """(permitted, excluded) subtrees that shut each name form a subordinate listing what
    it permits did not list: BR 7.1.2.5.2's forms for DNS (the empty dNSName) and IP
    (0.0.0.0/0, ::/0), and only `nothing.invalid` permitted for e-mail and URIs."""
    if not constraints.permits:
        return [], []
    permitted: list[x509.GeneralName] = []
    excluded: list[x509.GeneralName] = []
    if not constraints.permitted_dns:
        excluded.append(x509.DNSName(""))
    if not constraints.permitted_ip:
        excluded += [x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
                     x509.IPAddress(ipaddress.ip_network("::/0"))]
    if not constraints.permitted_email:
        permitted.append(x509.RFC822Name(_NOWHERE))
    permitted.append(x509.UniformResourceIdentifier(_NOWHERE))
    return permitted, excluded


def _constraint_extensions(constraints: SubCAConstraints) -> list[Extension]:
    """nameConstraints (critical: RFC 5280 4.2.1.10 says a CA MUST mark it so) and an
    extendedKeyUsage that limits the purposes below the subordinate."""
    extensions: list[Extension] = []
    if constraints.names_constrained:
        shut_permitted, shut_excluded = _shut_forms(constraints)
        permitted = _subtrees(constraints.permitted_dns, constraints.permitted_ip,
                              constraints.permitted_email) + shut_permitted
        if constraints.permitted_dirname:
            permitted.append(x509.DirectoryName(parse_subject(constraints.permitted_dirname)))
        excluded = _subtrees(constraints.excluded_dns, constraints.excluded_ip,
                             constraints.excluded_email)
        excluded += [name for name in shut_excluded if name not in excluded]
        extensions.append((x509.NameConstraints(permitted or None, excluded or None), True))
    if constraints.purposes:
        extensions.append((x509.ExtendedKeyUsage(
            [x509.ObjectIdentifier(PURPOSES[p]) for p in constraints.purposes]), False))
    return extensions


@dataclass(frozen=True, slots=True)
class Grant:
    """What a profile kind grants a key: the ceiling for what a request may ask."""

    key_usage: x509.KeyUsage
    purposes: tuple[x509.ObjectIdentifier, ...]  # extendedKeyUsage; empty for a CA
    ca: bool


def grant(usage: CertificateType, public_key: PublicKey) -> Grant:
    """The one place that says which usages a type's certificate carries for a key: the
    type's keyUsage, plus its rsa_key_usage where the key can encipher (RSA key transport,
    as in TLS 1.2)."""
    flags = usage.usage_flags(rsa=isinstance(public_key, rsa.RSAPublicKey))
    purposes = tuple(x509.ObjectIdentifier(oid) for oid in usage.extended_key_usage)
    return Grant(_key_usage(flags), purposes, ca=usage.ca)


def _type_extensions(usage: CertificateType) -> list[Extension]:
    """What a type adds beyond usage and names: policies, OCSP no-check, must-staple."""
    extensions: list[Extension] = []
    if usage.policies:
        extensions.append((x509.CertificatePolicies([_policy(p.oid, p.cps, p.notice)
                                                     for p in usage.policies]), False))
    if usage.ocsp_no_check:
        # RFC 6960 4.2.2.2.1: a delegated responder's own status is not asked; NULL value.
        extensions.append((x509.OCSPNoCheck(), False))
    if usage.must_staple:
        # RFC 7633: the server must staple an OCSP response (status_request).
        extensions.append((x509.TLSFeature([x509.TLSFeatureType.status_request]), False))
    return extensions


def _policy(oid: str, cps: str, notice: str) -> x509.PolicyInformation:
    qualifiers: list[str | x509.UserNotice] = [cps] if cps else []
    if notice:
        qualifiers.append(x509.UserNotice(None, notice))
    return x509.PolicyInformation(x509.ObjectIdentifier(oid), qualifiers or None)


def leaf_extensions(usage: CertificateType, public_key: PublicKey,
                    names: Sequence[x509.GeneralName], issuer: x509.Certificate,
                    urls: CAURLs = CAURLs(), constraints: SubCAConstraints | None = None
                    ) -> list[Extension]:
    """An end-entity or a subordinate CA certificate's extensions, in a fixed order."""
    granted = grant(usage, public_key)
    if usage.ca:
        limits = constraints or SubCAConstraints()
        return ca_extensions(public_key, issuer, path_length=limits.path_length, urls=urls,
                             constraints=limits, key_usage=granted.key_usage
                             ) + _type_extensions(usage)
    extensions: list[Extension] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (granted.key_usage, True),
    ]
    if granted.purposes:
        extensions.append((x509.ExtendedKeyUsage(list(granted.purposes)),
                           usage.critical_extended_key_usage))
    extensions += [(_ski(public_key), False), (_aki(issuer), False)]
    if names:
        # Never empty-subject here (policy requires a CN), so not critical (4.2.1.6).
        extensions.append((x509.SubjectAlternativeName(list(names)), False))
    return extensions + _distribution(urls) + _type_extensions(usage)
