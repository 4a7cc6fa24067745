"""Extension templates: what each kind of certificate says about its key's use.

The CSR never decides these (RFC 5280 4.2): only subjectAltName comes from the request,
and only after policy has passed its names. Each flag is spelled out with the reason.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from spoolca.config import ProfileKind
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


def _key_usage(*, digital_signature: bool = False, key_encipherment: bool = False,
               key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


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
                  constraints: SubCAConstraints | None = None) -> list[Extension]:
    """A CA certificate: root when issuer is None (no AKI needed), else subordinate,
    with what it may certify (a subca profile's constraints)."""
    extensions: list[Extension] = [
        # RFC 5280 4.2.1.9: critical in every CA certificate.
        (x509.BasicConstraints(ca=True, path_length=path_length), True),
        (grant(ProfileKind.SUBCA, public_key).key_usage, True),
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


def grant(kind: ProfileKind, public_key: PublicKey) -> Grant:
    """The one place that says which usages each kind of certificate carries."""
    if kind == ProfileKind.SUBCA:
        # A CA signs certificates and CRLs and nothing else.
        return Grant(_key_usage(key_cert_sign=True, crl_sign=True), (), ca=True)
    # keyEncipherment only where the key can encipher: RSA key transport in TLS 1.2.
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    server = kind == ProfileKind.SERVER
    usage = _key_usage(digital_signature=True, key_encipherment=is_rsa and server)
    purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else \
        ExtendedKeyUsageOID.CLIENT_AUTH
    return Grant(usage, (purpose,), ca=False)


def leaf_extensions(kind: ProfileKind, public_key: PublicKey, names: Sequence[x509.GeneralName],
                    issuer: x509.Certificate, urls: CAURLs = CAURLs(),
                    constraints: SubCAConstraints | None = None) -> list[Extension]:
    """An end-entity (server/client) or a subordinate CA certificate's extensions."""
    if kind == ProfileKind.SUBCA:
        limits = constraints or SubCAConstraints()
        return ca_extensions(public_key, issuer, path_length=limits.path_length, urls=urls,
                             constraints=limits)
    granted = grant(kind, public_key)
    extensions: list[Extension] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (granted.key_usage, True),
        (x509.ExtendedKeyUsage(list(granted.purposes)), False),
        (_ski(public_key), False),
        (_aki(issuer), False),
    ]
    if names:
        # Never empty-subject here (policy requires a CN), so not critical (4.2.1.6).
        extensions.append((x509.SubjectAlternativeName(list(names)), False))
    return extensions + _distribution(urls)
