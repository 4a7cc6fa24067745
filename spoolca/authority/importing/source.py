"""A CA made by hand (the OpenSSL how-tos) or by easy-rsa, read and checked before import.

Nothing is written here, and only the source is read: no link is followed (to a file or
a folder, or in a path openssl.cnf names), nothing outside the folder is opened, and
every file is capped. Every file that goes into the import is hashed (the import's audit
entry lists those, and only those),
and every disagreement between the files is a Discrepancy: an index line without its
certificate, a certificate the index does not list, a serial file behind the largest
serial, a key that does not belong to its certificate, two valid certificates for one
subject. The importer refuses while one is unresolved.

Layouts: `import-openssl DIR` takes the root how-to's flat `CA/` (cacert.pem,
private/cakey.pem) or the intermediate how-to's root with `intermediate/` below it; paths
come from each folder's openssl.cnf ([ ca ] default_ca), with `$dir` taken as the folder
the file is in (the CA may have moved, e.g. copied from a stick). `import-easyrsa PKI`
takes easy-rsa's pki/ (ca.crt, private/ca.key, issued/, certs_by_serial/, revoked/, reqs/).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from spoolca.errors import SpoolcaError
from spoolca.host.untrusted import read_untrusted
from spoolca.keys.algorithms import spki
from spoolca.notation.dn import oneline
from spoolca.register.openssl_index import IndexEntry, IndexFileError, parse_index

__all__ = ["Discrepancy", "Source", "SourceCA", "key_matches", "read_file", "read_source",
           "token_uri", "used"]

MAX_FILE = 16 << 20    # a certificate, key, request or openssl.cnf is far smaller
MAX_INDEX = 512 << 20  # index.txt of a few million certificates

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_PEM_CSR = re.compile(rb"-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----.+?-----END (?:NEW )?"
                      rb"CERTIFICATE REQUEST-----", re.S)
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """A disagreement in the source; `actions` are what --resolve CODE=ACTION accepts
    (none: it cannot be imported as it is)."""

    code: str
    message: str
    actions: tuple[str, ...] = ()


@dataclass
class SourceCA:
    """One CA of the source: its certificate, key file, index and what it issued."""

    role: str                        # "root" or "intermediate" in spoolca's terms
    folder: Path
    certificate: x509.Certificate
    key_file: Path                   # or a pkcs11: URI (Path("pkcs11:token=...;object=..."))
    index_file: Path
    entries: list[IndexEntry]
    issued: dict[str, x509.Certificate]     # serial (index form) -> certificate file
    unlisted: dict[str, x509.Certificate]   # issued by this CA, but not in the index
    next_crl_number: int | None             # crlnumber: the next the old CA would use
    policy: dict[str, str] = field(default_factory=dict)
    preserve_dn: bool = False
    email_in_dn: bool = False


@dataclass
class Source:
    kind: str                        # "openssl" or "easyrsa"
    folder: Path
    cas: list[SourceCA]              # the root first
    csrs: list[tuple[Path, x509.CertificateSigningRequest]]
    read: dict[str, str]             # every file read (relative path) -> SHA-256
    problems: list[Discrepancy]
    cache: dict[Path, bytes] = field(default_factory=dict, repr=False)


def read_source(folder: Path, kind: str) -> Source:
    """The source CA directory, read and checked; SpoolcaError if it is not one."""
    if not folder.is_dir() or folder.is_symlink():
        raise SpoolcaError(f"{folder} is not a directory (a link to one is not followed)")
    source = Source(kind, folder.resolve(), [], [], {}, [])
    if kind == "easyrsa":
        source.cas.append(_easyrsa_ca(source, source.folder))
    else:
        source.cas.append(_openssl_ca(source, source.folder, "root"))
        if (source.folder / "intermediate").is_dir():
            source.cas.append(_openssl_ca(source, source.folder / "intermediate",
                                          "intermediate"))
    _check_chain(source)
    for ca in source.cas:
        _check_index(source, ca)
    _find_requests(source)
    return source


def _find_requests(source: Source) -> None:
    """CSRs: *.csr and *.req files (PEM or DER; easy-rsa's reqs/, the how-to's csr/), and
    PEM requests in *.pem files (the root how-to's req.pem)."""
    for path in _files(source.folder, ("*.csr", "*.req", "*.pem")):
        if "private" in path.relative_to(source.folder).parts:
            continue
        data = read_file(source, path)
        blocks = _PEM_CSR.findall(data)
        if path.suffix == ".pem" and not blocks:
            continue
        try:
            for block in blocks or [data]:
                source.csrs.append((path, _load_csr(block)))
            used(source, path)
        except ValueError:
            source.problems.append(Discrepancy("unreadable-request", f"{_rel(source, path)} "
                                               "is not a PEM or DER CSR", ("skip",)))


# -- the two layouts -------------------------------------------------------------------------

def _openssl_ca(source: Source, folder: Path, role: str) -> SourceCA:
    cnf = folder / "openssl.cnf"
    settings: dict[str, str] = {}
    policy: dict[str, str] = {}
    if os.path.lexists(cnf):
        sections = _parse_cnf(read_file(source, cnf).decode("utf-8", "replace"))
        used(source, cnf)
        section = sections.get(sections.get("ca", {}).get("default_ca", "CA_default"), {})
        settings = {key: _rebase(value, section.get("dir", ""), folder)
                    for key, value in section.items()}
        policy = sections.get(section.get("policy", ""), {})
    certificate = _first_file(folder, settings.get("certificate"),
                              ("cacert.pem", "certs/ca.cert.pem",
                               f"certs/{role}.cert.pem"), "the CA certificate")
    named = settings.get("private_key", "")
    # A key in a token (the pkcs11 engine or provider): a URI, kept in its token.
    key = Path(named) if named.startswith("pkcs11:") else _first_file(
        folder, named or None,
        ("private/cakey.pem", "private/ca.key.pem", f"private/{role}.key.pem"), "the CA key")
    return _ca(source, role, folder, certificate, key,
               Path(settings.get("database") or folder / "index.txt"),
               Path(settings.get("serial") or folder / "serial"),
               Path(settings.get("crlnumber") or folder / "crlnumber"), policy,
               preserve=settings.get("preserve", "no").lower() == "yes",
               email=settings.get("email_in_dn", "yes").lower() == "yes")


def _easyrsa_ca(source: Source, pki: Path) -> SourceCA:
    for needed in ("ca.crt", "private/ca.key", "index.txt"):
        if not (pki / needed).is_file():
            raise SpoolcaError(f"{pki} is not an easy-rsa PKI: {needed} is missing")
    # easy-rsa's default is cn_only: every request's DN is its CN, nothing matched.
    return _ca(source, "root", pki, pki / "ca.crt", pki / "private" / "ca.key",
               pki / "index.txt", pki / "serial", pki / "crlnumber",
               {"commonName": "supplied"}, preserve=False, email=False)


def _ca(source: Source, role: str, folder: Path, certificate: Path, key: Path, index: Path,
        serial: Path, crlnumber: Path, policy: dict[str, str], *, preserve: bool,
        email: bool) -> SourceCA:
    try:
        cert = x509.load_pem_x509_certificate(read_file(source, certificate))
    except ValueError:
        raise SpoolcaError(f"{certificate} is not a PEM certificate") from None
    used(source, certificate)
    if not os.path.lexists(index):
        raise SpoolcaError(f"the {role} CA's database {index} is missing")
    try:
        entries = parse_index(read_file(source, index, MAX_INDEX))
    except IndexFileError as exc:
        raise SpoolcaError(f"{index}: {_shown(str(exc))}") from None
    used(source, index)
    issued, unlisted = _issued_by(source, folder, cert, {e.serial for e in entries})
    ca = SourceCA(role, folder, cert, key, index, entries, issued, unlisted,
                  _counter(source, crlnumber), policy, preserve, email)
    next_serial = _counter(source, serial)
    largest = max((int(e.serial, 16) for e in entries), default=0)
    # easy-rsa draws a random serial for each certificate: its serial file is no counter.
    if source.kind == "openssl" and next_serial is not None and entries and \
            next_serial <= largest:
        source.problems.append(Discrepancy(
            "serial-behind", f"{_rel(source, serial)} says the next serial is "
            f"{next_serial:X}, but the index already holds {largest:X} (spoolca draws "
            "random 127-bit serials and never re-uses one, so this only tells the old CA "
            "was edited by hand)", ("ignore",)))
    return ca


# -- checks ------------------------------------------------------------------------------------

def _check_chain(source: Source) -> None:
    root = source.cas[0].certificate
    if root.issuer != root.subject or not _signed_by(root, root):
        raise SpoolcaError(f"the CA certificate in {source.cas[0].folder} is not self-signed: "
                           "only a CA whose root is in the directory can be imported")
    if len(source.cas) == 2 and not _signed_by(source.cas[1].certificate, root):
        raise SpoolcaError("the intermediate CA certificate is not signed by the root's key")


def _check_index(source: Source, ca: SourceCA) -> None:
    valid_subjects: dict[str, str] = {}
    for entry in ca.entries:
        cert = ca.issued.get(entry.serial)
        where = f"{_rel(source, ca.index_file)} line {entry.line_number} (serial {entry.serial})"
        if cert is None:
            source.problems.append(Discrepancy(
                "missing-certificate", f"{where}: no certificate file with this serial "
                f"issued by the {ca.role} CA", ("skip",)))
            continue
        if entry.subject != oneline(cert.subject):
            source.problems.append(Discrepancy(
                "index-subject-mismatch", f"{where}: the index says the subject is "
                f"{_shown(entry.subject)}, its certificate {_shown(oneline(cert.subject))}",
                ("certificate",)))
        ends = cert.not_valid_after_utc
        if ends != entry.expiry:
            source.problems.append(Discrepancy(
                "index-mismatch", f"{where}: the index says it ends "
                f"{entry.expiry:%Y-%m-%d %H:%M:%S}, its certificate "
                f"{ends:%Y-%m-%d %H:%M:%S}"))
        if entry.status == "V":
            earlier = valid_subjects.setdefault(entry.subject, entry.serial)
            if earlier != entry.serial:
                source.problems.append(Discrepancy(
                    "duplicate-subject", f"{where}: {entry.subject} is also serial {earlier}, "
                    "and both are valid", ("keep",)))
    for serial in sorted(ca.unlisted):
        source.problems.append(Discrepancy(
            "unlisted-certificate", f"a certificate issued by the {ca.role} CA, serial "
            f"{serial}, is not in {_rel(source, ca.index_file)}", ("import", "skip")))


def key_matches(ca: SourceCA, public_key: object) -> bool:
    return spki(public_key) == spki(ca.certificate.public_key())  # type: ignore[arg-type]


def token_uri(ca: SourceCA) -> dict[str, str] | None:
    """The attributes of a pkcs11: key URI (RFC 7512 path part; a pin-value is ignored:
    the PIN is spoolca's unlock secret, never a file's)."""
    text = str(ca.key_file)
    if not text.startswith("pkcs11:"):
        return None
    path = text.removeprefix("pkcs11:").split("?", 1)[0]
    return {key: unquote(value) for key, _, value in
            (part.partition("=") for part in path.split(";") if part)
            if key not in ("pin-value", "pin-source")}


# -- files -------------------------------------------------------------------------------------

def _issued_by(source: Source, folder: Path, ca: x509.Certificate, listed: set[str]
               ) -> tuple[dict[str, x509.Certificate], dict[str, x509.Certificate]]:
    """Certificates in the folder's files that this CA signed, by serial: those the index
    lists, and those it does not."""
    issued: dict[str, x509.Certificate] = {}
    unlisted: dict[str, x509.Certificate] = {}
    for path in _files(folder, ("*.pem", "*.crt", "*.cer")):
        if "private" in path.relative_to(folder).parts:
            continue
        for block in _PEM_CERT.findall(read_file(source, path)):
            try:
                cert = x509.load_pem_x509_certificate(block)
            except ValueError:
                continue
            if cert.issuer != ca.subject or cert == ca or not _signed_by(cert, ca):
                continue
            serial = f"{cert.serial_number:X}"
            serial = serial if len(serial) % 2 == 0 else "0" + serial
            (issued if serial in listed else unlisted).setdefault(serial, cert)
            used(source, path)
    return issued, unlisted


def _files(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Regular files under FOLDER matching PATTERNS; no link followed, to a file or a
    folder (a link in a CA folder could point anywhere: certs/x.pem -> /root/secret)."""
    found = []
    for top, folders, names in os.walk(folder, followlinks=False):
        folders[:] = [f for f in folders if not os.path.islink(os.path.join(top, f))]
        for name in names:
            path = Path(top) / name
            if any(fnmatch.fnmatch(name, p) for p in patterns) and _regular(path):
                found.append(path)
    return sorted(found)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _within(source: Source, path: Path) -> Path:
    """PATH, if it lies in the source folder and no part of it is a link; else one
    sentence: an import reads only the source (openssl.cnf may name any path)."""
    absolute = Path(os.path.abspath(path))
    if os.path.realpath(absolute) != str(absolute) or not absolute.is_relative_to(
            source.folder):
        raise SpoolcaError(f"{_shown(str(path))} is outside {source.folder} or reached "
                           "through a symbolic link: an import reads only the CA folder's own "
                           "files; copy the file into it (and name it relative to it)")
    return absolute


def read_file(source: Source, path: Path, limit: int = MAX_FILE) -> bytes:
    """The file's bytes (a regular file of the source, not through a link, at most LIMIT
    bytes), read once; `used` lists it for the audit entry."""
    cached = source.cache.get(path)
    if cached is not None:
        return cached
    read = read_untrusted(_within(source, path), limit)
    if read.data is None and read.problem != "file.empty":
        raise SpoolcaError(f"failed to read {_shown(str(path))}: "
                           f"{read.problem} ({read.detail})")
    source.cache[path] = read.data or b""
    return source.cache[path]


def used(source: Source, path: Path) -> None:
    """PATH went into the import: its SHA-256 goes into the audit entry."""
    source.read[_rel(source, path)] = hashlib.sha256(source.cache.get(path, b"")).hexdigest()


def _shown(text: str) -> str:
    """Text from the source for a message: control characters escaped, never sent raw to
    the operator's terminal (an index.txt may hold anything)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def _rel(source: Source, path: Path) -> str:
    for candidate in (path, path.resolve()):  # found under the folder: no resolve needed
        try:
            return str(candidate.relative_to(source.folder))
        except ValueError:
            continue
    return str(path)


def _counter(source: Source, path: Path) -> int | None:
    """serial / crlnumber: one hexadecimal number, the next the old CA would use."""
    if not os.path.lexists(path):
        return None
    text = read_file(source, path, 64).decode("ascii", "replace").strip()
    used(source, path)
    try:
        return int(text, 16)
    except ValueError:
        raise SpoolcaError(f"{path} does not hold a hexadecimal number") from None


def _first_file(folder: Path, named: str | None, defaults: tuple[str, ...], what: str) -> Path:
    candidates = [Path(named)] if named else [folder / d for d in defaults]
    for candidate in candidates:
        if _regular(candidate) or (named and os.path.lexists(candidate)):
            return candidate  # a named link is refused with its reason when it is read
    raise SpoolcaError(f"{what} is not in {folder} (looked for "
                       f"{', '.join(str(c) for c in candidates)})")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _load_csr(data: bytes) -> x509.CertificateSigningRequest:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_csr(data)
    return x509.load_der_x509_csr(data)


# -- openssl.cnf -------------------------------------------------------------------------------

def _parse_cnf(text: str) -> dict[str, dict[str, str]]:
    """Sections of `key = value` lines, `$var` expanded from the section or the top."""
    sections: dict[str, dict[str, str]] = {"": {}}
    current = sections[""]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
            continue
        if "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            current[key] = _expand(value, current, sections[""])
    return sections


def _expand(value: str, section: dict[str, str], top: dict[str, str]) -> str:
    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return section.get(name) or top.get(name, match.group(0))

    return _VAR.sub(variable, value)


def _rebase(value: str, old_dir: str, folder: Path) -> str:
    """A path under the cnf's `dir` (where the CA was made), under `folder` (where it is)."""
    if value.startswith("pkcs11:"):
        return value
    if old_dir and (value == old_dir or value.startswith(old_dir.rstrip("/") + "/")):
        return str(folder / value[len(old_dir):].lstrip("/"))
    return value if Path(value).is_absolute() else str(folder / value)
