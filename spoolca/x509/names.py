"""Hostnames, e-mail addresses and URIs as a CA must judge them: strictly, ASCII only.

Internationalized names must be submitted as A-labels (`xn--...`): subjectAltName
dNSName is an IA5String (RFC 5280 4.2.1.6), and a CA that converts U-labels itself
signs a name the requester never saw. Each A-label is decoded and checked as IDNA2008
(RFC 5891) with the `idna` library, so `xn--zz` and other invalid A-labels are refused.
All checks here are anchored, non-backtracking matches: linear in the input.
"""

from __future__ import annotations

import ipaddress
import re

import idna

__all__ = ["domain_allowed", "hostname_problem", "is_email", "is_uri", "parse_ip"]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_IP_CHARACTERS = frozenset("0123456789abcdefABCDEF.:")  # a literal's, but for a %scope
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address if `text` is an IPv4 or IPv6 literal, else None. A hostname is told
    apart by its letters first: `ip_address` raises three exceptions to say no."""
    if "%" not in text and not _IP_CHARACTERS.issuperset(text):
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def hostname_problem(name: str, *, allow_wildcards: bool) -> str | None:
    """None if `name` is a valid DNS name to certify; else the finding code why not."""
    lowered = name.lower()
    if not lowered or len(lowered) > 253 or not lowered.isascii() or lowered.endswith("."):
        return "policy.san.dns_invalid"
    labels = lowered.split(".")
    if labels[0] == "*":
        if not allow_wildcards:
            return "policy.san.wildcard_not_allowed"
        labels = labels[1:]
    # At least two labels: a single label ("localhost", "intranet") is not a domain name
    # a CA may certify (pkilint: pkix.invalid_domain_name_syntax), and "*.com" would
    # cover a whole top-level domain.
    if len(labels) < 2:
        return "policy.san.dns_invalid"
    if not all(_LABEL.match(label) for label in labels):
        return "policy.san.dns_invalid"
    if labels[-1].isdigit():  # "10.0.0.1" is an IP address, not a hostname
        return "policy.san.dns_invalid"
    if not all(_valid_ldh_or_alabel(label) for label in labels):
        return "policy.san.dns_invalid"
    return None


def _valid_ldh_or_alabel(label: str) -> bool:
    """RFC 5890 2.3.1: `??--` labels are reserved; only `xn--` A-labels that decode to a
    valid U-label and encode back to the same A-label are allowed."""
    if label[2:4] != "--":
        return True
    if not label.startswith("xn--"):
        return False
    try:
        return idna.alabel(idna.ulabel(label)).decode() == label
    except (idna.IDNAError, UnicodeError, ValueError):
        return False


def domain_allowed(name: str, allowed_domains: tuple[str, ...]) -> bool:
    """True if `name` (or the base of a wildcard) is a listed domain or below one.

    An empty list allows every valid name, so the demo works before anyone edits it.
    """
    if not allowed_domains:
        return True
    base = name.lower().removeprefix("*.")
    return any(base == domain or base.endswith("." + domain) for domain in allowed_domains)


def is_email(text: str) -> bool:
    """A plain ASCII `local@domain` address with a valid domain name."""
    local, at, domain = text.rpartition("@")
    if not at or len(text) > 254 or not _EMAIL_LOCAL.match(local):
        return False
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return hostname_problem(domain, allow_wildcards=False) is None


def is_uri(text: str) -> bool:
    """RFC 5280 4.2.1.6: an absolute URI: a scheme (RFC 3986 3.1), a scheme-specific part,
    ASCII, and no spaces or controls. pkilint's lint judges the rest before signing."""
    scheme, colon, rest = text.partition(":")
    return bool(colon and rest and scheme[:1].isalpha() and text.isascii()
                and all(c.isalnum() or c in "+-." for c in scheme)
                and not any(c <= " " for c in text))
