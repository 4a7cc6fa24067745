"""Re-make the built-in profiles' golden extensions (kept for the record; the committed
files are the vectors).

First made by the code as it stood before profiles became data (commit 0484a09, when a
kind was an enum and its extensions were code): for each built-in kind and key type,
every extension of the certificate (OID, critical, DER), so the data-driven profiles are
proven to issue the same bytes. Re-running it now must leave expected.json unchanged.

    python -m tests.vectors.profiles.make_profiles
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

HERE = Path(__file__).parent
KINDS = ("server", "client", "subca")


def keys() -> dict[str, object]:
    """The fixed keys of the vectors (committed as PEM; made once)."""
    made = {}
    for name, make in (("issuer", lambda: ec.generate_private_key(ec.SECP384R1())),
                       ("ec-p256", lambda: ec.generate_private_key(ec.SECP256R1())),
                       ("rsa-2048", lambda: rsa.generate_private_key(65537, 2048))):
        path = HERE / f"{name}.key.pem"
        if not path.exists():
            path.write_bytes(make().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        made[name] = serialization.load_pem_private_key(path.read_bytes(), None)
    return made


def issuer(key) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Vector CA")])
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(moment)
            .not_valid_after(moment + dt.timedelta(days=3650))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA384()))


def names(kind: str) -> list[x509.GeneralName]:
    return {"server": [x509.DNSName("www.sample.com")],
            "client": [x509.RFC822Name("alice@sample.com")], "subca": []}[kind]


def extensions_json(extensions) -> list[list[object]]:
    return [[value.oid.dotted_string, critical, value.public_bytes().hex()]
            for value, critical in extensions]


def the_issuer() -> x509.Certificate:
    """The vectors' issuing CA (committed; made once, its ECDSA signature is random)."""
    if not (HERE / "issuer.pem").exists():
        (HERE / "issuer.pem").write_bytes(issuer(keys()["issuer"]).public_bytes(
            serialization.Encoding.PEM))
    return x509.load_pem_x509_certificate((HERE / "issuer.pem").read_bytes())


def cases(kind: str, usage=None) -> dict[str, list[list[object]]]:
    """KIND's vectors as the code makes them now, by case name (USAGE: another type to
    make them with, for the counter-case)."""
    from spoolca.config.certtypes import shipped_types
    from spoolca.x509.profiles import CAURLs, leaf_extensions

    made, ca = keys(), the_issuer()
    urls = CAURLs("http://pki.sample.com/intermediate.crl", "http://pki.sample.com/int.crt")
    vectors = {}
    for key in ("ec-p256", "rsa-2048"):
        for with_urls in (False, True):
            vectors[f"{kind}/{key}/{'urls' if with_urls else 'no-urls'}"] = extensions_json(
                leaf_extensions(usage or shipped_types()[kind], made[key].public_key(),
                                names(kind), ca, urls if with_urls else CAURLs()))
    return vectors


def expected(kind: str) -> dict[str, list[list[object]]]:
    """KIND's committed vectors."""
    every = json.loads((HERE / "expected.json").read_text())
    return {case: value for case, value in every.items() if case.startswith(f"{kind}/")}


def main() -> None:
    vectors = {case: value for kind in KINDS for case, value in cases(kind).items()}
    (HERE / "expected.json").write_text(json.dumps(vectors, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
