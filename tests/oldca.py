"""CA directories made by the real tools, as our users made theirs: the root how-to's flat
CA/ (its own openssl.cnf, with today's digest and key size: OpenSSL 3 refuses its md5),
the intermediate how-to's root + intermediate/ layout, and easy-rsa's pki/. Each holds a
valid, a revoked and an expired certificate, and the requests they were made from."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED = REPO.parent / "shared" / "seeds" / "openssl-root-ca-howto.txt"
HOWTO_CNF = Path(__file__).parent / "root-howto-openssl.cnf"
EASYRSA = "/usr/share/easy-rsa/easyrsa"
ORG = "/C=US/ST=New York/O=The Sample Company"


def run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout


_MADE: dict[tuple[str, bytes], Path] = {}


def made_once(build: Callable[..., Path]) -> Callable[..., Path]:
    """Build the CA the first time a test process asks for it (with this passphrase), then
    hand each test a copy of its own: the tools' RSA keys take seconds to generate and are
    not what an import test checks. The copies keep relative paths, as a copied CA does."""

    @functools.wraps(build)
    def copy(place: Path, passphrase: Path) -> Path:
        key = (build.__name__, passphrase.read_bytes())
        if key not in _MADE:
            workshop = Path(tempfile.mkdtemp(prefix=f"spoolca-{build.__name__}-"))
            atexit.register(shutil.rmtree, workshop, ignore_errors=True)
            (workshop / "passphrase").write_bytes(key[1])
            _MADE[key] = build(workshop, workshop / "passphrase")
        made = _MADE[key]
        return Path(shutil.copytree(made, place / made.name, symlinks=True))

    return copy


def howto_cnf(seed: Path = SEED) -> str:
    """The openssl.cnf block of the root how-to (../shared/seeds/), as it stands there."""
    lines = seed.read_text().splitlines()
    begin = max(i for i, line in enumerate(lines) if line.startswith("---Begin---"))
    end = next(i for i in range(begin, len(lines)) if lines[i].startswith("----End----"))
    return "\n".join(lines[begin + 1:end]) + "\n"


def seed_cnf() -> str:
    """The root how-to's openssl.cnf, verbatim but for md5 -> sha256, 1024 -> 2048 bits.
    Kept in tests/ (root-howto-openssl.cnf) so a checkout without ../shared tests import
    too; test_import checks the copy against the seed where the seed is there."""
    text = HOWTO_CNF.read_text()
    text = text.replace("default_md         = md5                 # message digest algorithm",
                        "default_md         = sha256")
    text = text.replace("default_md         = md5", "default_md         = sha256")
    text = text.replace("default_bits       = 1024", "default_bits       = 2048")
    assert "md5" not in text and "= 1024" not in text
    return text.replace("string_mask        = nombstr", "string_mask        = utf8only")


@made_once
def flat_ca(place: Path, passphrase: Path) -> Path:
    """The root how-to, command by command: a CA, three certificates (b revoked for key
    compromise, c revoked without a reason), one expired, and b's request signed again
    (the how-to's renewal)."""
    ca = place / "CA"
    (ca / "newcerts").mkdir(parents=True)
    (ca / "private").mkdir()
    (ca / "serial").write_text("01\n")
    (ca / "index.txt").write_text("")
    (ca / "openssl.cnf").write_text(seed_cnf())
    pw = ["-passin", f"file:{passphrase}"]
    run("openssl", "req", "-new", "-x509", "-extensions", "v3_ca", "-keyout",
        "private/cakey.pem", "-out", "cacert.pem", "-days", "3650", "-config", "./openssl.cnf",
        "-passout", f"file:{passphrase}", "-subj", f"{ORG}/CN=Sample Root CA", cwd=ca)
    for host in ("a", "b", "c", "old"):
        run("openssl", "req", "-new", "-nodes", "-out", f"req-{host}.pem", "-keyout",
            f"key-{host}.pem", "-config", "./openssl.cnf", "-subj",
            f"{ORG}/CN={host}.sample.com", cwd=ca)
    for host in ("a", "b", "c"):
        run("openssl", "ca", "-batch", *pw, "-out", f"cert-{host}.pem", "-config",
            "./openssl.cnf", "-infiles", f"req-{host}.pem", cwd=ca)
    run("openssl", "ca", *pw, "-revoke", "newcerts/02.pem", "-crl_reason", "keyCompromise",
        "-config", "./openssl.cnf", cwd=ca)
    run("openssl", "ca", *pw, "-revoke", "newcerts/03.pem", "-config", "./openssl.cnf", cwd=ca)
    run("openssl", "ca", "-batch", *pw, "-startdate", "20200101000000Z", "-enddate",
        "20210101000000Z", "-out", "cert-old.pem", "-config", "./openssl.cnf", "-infiles",
        "req-old.pem", cwd=ca)
    run("openssl", "ca", "-batch", *pw, "-out", "cert-b2.pem", "-config", "./openssl.cnf",
        "-infiles", "req-b.pem", cwd=ca)
    return ca


_TWO_LEVEL = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
dir               = {dir}
certs             = $dir/certs
crl_dir           = $dir/crl
new_certs_dir     = $dir/newcerts
database          = $dir/index.txt
serial            = $dir/serial
crlnumber         = $dir/crlnumber
private_key       = $dir/private/{name}.key.pem
certificate       = $dir/certs/{name}.cert.pem
crl               = $dir/crl/{name}.crl.pem
default_md        = sha256
default_crl_days  = 30
preserve          = no
policy            = {policy}
[ policy_strict ]
countryName             = match
stateOrProvinceName     = match
organizationName        = match
organizationalUnitName  = optional
commonName              = supplied
emailAddress            = optional
[ policy_loose ]
countryName             = optional
stateOrProvinceName     = optional
localityName            = optional
organizationName        = optional
organizationalUnitName  = optional
commonName              = supplied
emailAddress            = optional
[ req ]
distinguished_name = req_distinguished_name
string_mask        = utf8only
default_md         = sha256
[ req_distinguished_name ]
[ v3_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, cRLSign, keyCertSign
[ v3_intermediate_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, digitalSignature, cRLSign, keyCertSign
[ server_cert ]
basicConstraints = CA:FALSE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer:always
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
"""


def two_level_ca(place: Path, passphrase: Path) -> Path:
    """The intermediate how-to: /root/ca with intermediate/ below, leaves signed by the
    intermediate (one revoked, one expired, a CRL made so crlnumber moved on); then its
    openssl.cnf files are left naming /root/ca, where it was made, as a copied CA does."""
    root = place / "ca"
    inter = root / "intermediate"
    for folder, name, policy in ((root, "ca", "policy_strict"),
                                 (inter, "intermediate", "policy_loose")):
        for sub in ("certs", "crl", "newcerts", "private", "csr"):
            (folder / sub).mkdir(parents=True)
        (folder / "index.txt").write_text("")
        (folder / "serial").write_text("1000\n")
        (folder / "crlnumber").write_text("1000\n")
        (folder / "openssl.cnf").write_text(_TWO_LEVEL.format(dir=folder, name=name,
                                                              policy=policy))
    pw_in, pw_out = ["-passin", f"file:{passphrase}"], ["-passout", f"file:{passphrase}"]
    run("openssl", "genrsa", "-aes256", *pw_out, "-out", "private/ca.key.pem", "4096",
        cwd=root)
    run("openssl", "req", "-config", "openssl.cnf", "-key", "private/ca.key.pem", *pw_in,
        "-new", "-x509", "-days", "7300", "-sha256", "-extensions", "v3_ca", "-out",
        "certs/ca.cert.pem", "-subj", "/C=GB/ST=England/O=Alice Ltd/CN=Alice Ltd Root CA",
        cwd=root)
    run("openssl", "genrsa", "-aes256", *pw_out, "-out", "intermediate/private/"
        "intermediate.key.pem", "4096", cwd=root)
    run("openssl", "req", "-config", "intermediate/openssl.cnf", "-new", "-sha256", "-key",
        "intermediate/private/intermediate.key.pem", *pw_in, "-out",
        "intermediate/csr/intermediate.csr.pem", "-subj",
        "/C=GB/ST=England/O=Alice Ltd/CN=Alice Ltd Intermediate CA", cwd=root)
    run("openssl", "ca", "-batch", "-config", "openssl.cnf", *pw_in, "-extensions",
        "v3_intermediate_ca", "-days", "3650", "-notext", "-md", "sha256", "-in",
        "intermediate/csr/intermediate.csr.pem", "-out",
        "intermediate/certs/intermediate.cert.pem", cwd=root)
    for host, dates in (("www", []), ("mail", []),
                        ("old", ["-startdate", "20200101000000Z", "-enddate",
                                 "20210101000000Z"])):
        run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout",
            f"intermediate/private/{host}.key.pem", "-out", f"intermediate/csr/{host}.csr.pem",
            "-subj", f"/C=US/ST=California/O=Alice Ltd/CN={host}.example.com",
            "-config", "intermediate/openssl.cnf", cwd=root)
        run("openssl", "ca", "-batch", "-config", "intermediate/openssl.cnf", *pw_in,
            "-extensions", "server_cert", *(dates or ["-days", "375"]), "-notext", "-md",
            "sha256", "-in", f"intermediate/csr/{host}.csr.pem", "-out",
            f"intermediate/certs/{host}.cert.pem", cwd=root)
    run("openssl", "ca", "-config", "intermediate/openssl.cnf", *pw_in, "-revoke",
        "intermediate/certs/mail.cert.pem", "-crl_reason", "superseded", cwd=root)
    run("openssl", "ca", "-config", "intermediate/openssl.cnf", *pw_in, "-gencrl", "-out",
        "intermediate/crl/intermediate.crl.pem", cwd=root)
    for folder, where in ((root, "/root/ca"), (inter, "/root/ca/intermediate")):
        cnf = folder / "openssl.cnf"
        cnf.write_text(cnf.read_text().replace(f"dir               = {folder}\n",
                                               f"dir               = {where}\n"))
    return root


def easyrsa_pki(place: Path) -> Path:
    """easy-rsa, its own commands: a CA, a server, a client revoked for key compromise, a
    CRL; and, since easy-rsa refuses to, an expired certificate signed by `openssl ca` with
    the PKI's own configuration."""
    pki = place / "pki"
    env = {"EASYRSA_PKI": str(pki), "EASYRSA_BATCH": "1"}
    run(EASYRSA, "init-pki", cwd=place, env=env)
    run(EASYRSA, "--req-cn=Sample Root CA", "build-ca", "nopass", cwd=place, env=env)
    run(EASYRSA, "build-server-full", "www", "nopass", cwd=place, env=env)
    run(EASYRSA, "build-client-full", "alice", "nopass", cwd=place, env=env)
    run(EASYRSA, "revoke", "alice", "keyCompromise", cwd=place, env=env)
    run(EASYRSA, "gen-crl", cwd=place, env=env)
    run(EASYRSA, "gen-req", "old", "nopass", cwd=place, env=env)
    run("openssl", "ca", "-batch", "-config", str(pki / "safessl-easyrsa.cnf"), "-startdate",
        "20200101000000Z", "-enddate", "20210101000000Z", "-in", "reqs/old.req", "-out",
        "issued/old.crt", cwd=pki)
    return pki


def token_flat_ca(place: Path, pin: bytes) -> Path:
    """The root how-to with its CA key in a SoftHSM2 token, used through OpenSSL's pkcs11
    engine (libengine-pkcs11-openssl): the key made with pkcs11-tool, the CA certificate
    with `openssl req -engine pkcs11`, a certificate signed and one revoked with `openssl
    ca -engine pkcs11`; openssl.cnf's private_key is the key's pkcs11: URI. SOFTHSM2_CONF
    must already name the token's configuration."""
    ca = place / "TokenCA"
    (ca / "newcerts").mkdir(parents=True)
    (ca / "index.txt").write_text("")
    (ca / "serial").write_text("01\n")
    uri = "pkcs11:token=oldca;object=rootkey;type=private"
    engine = ("[openssl_init]\nengines = engine_section\n"
              "[engine_section]\npkcs11 = pkcs11_section\n[pkcs11_section]\n"
              "engine_id = pkcs11\nMODULE_PATH = /usr/lib/softhsm/libsofthsm2.so\ninit = 0\n")
    cnf = "openssl_conf = openssl_init\n" + seed_cnf().replace("$dir/private/cakey.pem", uri) \
        + engine
    (ca / "openssl.cnf").write_text(cnf)
    env = {"OPENSSL_CONF": str(ca / "openssl.cnf")}
    (place / "pin").write_bytes(pin)
    run("pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label",
        "oldca", "--login", "--pin", pin.decode(), "--keypairgen", "--key-type",
        "EC:prime256v1", "--label", "rootkey", "--id", "01", cwd=ca)
    engine_args = ["-engine", "pkcs11", "-passin", f"file:{place / 'pin'}"]
    run("openssl", "req", "-new", "-x509", *engine_args, "-keyform", "engine", "-key", uri,
        "-extensions", "v3_ca", "-days", "3650", "-config", "./openssl.cnf", "-subj",
        f"{ORG}/CN=Token Root CA", "-out", "cacert.pem", cwd=ca, env=env)
    for host in ("a", "b"):
        run("openssl", "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-keyout", f"key-{host}.pem", "-out",
            f"req-{host}.pem", "-subj", f"{ORG}/CN={host}.sample.com", cwd=ca)
        run("openssl", "ca", "-batch", *engine_args, "-keyform", "engine", "-config",
            "./openssl.cnf", "-out", f"cert-{host}.pem", "-infiles", f"req-{host}.pem",
            cwd=ca, env=env)
    run("openssl", "ca", *engine_args, "-keyform", "engine", "-config", "./openssl.cnf",
        "-revoke", "newcerts/02.pem", "-crl_reason", "superseded", cwd=ca, env=env)
    return ca
