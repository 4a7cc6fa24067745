"""The CRL return trip's last leg (issue 29 item 4): an export's signed publication
manifest, checked by `spoolca verify-publication` where the CRLs are served, with no key
and no state directory; a real nginx serving what passed, and OpenSSL fetching it over
127.0.0.1 by the URL in the certificate (-crl_download).

Counter-cases: an older export over what is served (rolled back), a CRL swapped for one
of another key, a manifest edited, a fingerprint that is not the appliance's, and a CRL
that has lapsed by the web server's clock.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from tests.clock import FakeClock
from tests.nginx import Nginx, free_port, needs_nginx
from tests.pki import CA, fingerprint_of, make_csr, pem, spoolca


def _export(ca: CA, stick: Path) -> Path:
    stick.mkdir()
    done = ca.run("media", "export", str(stick))
    assert done.returncode == 0, done.stderr
    return stick / "spoolca-results"


def _verify(export: Path, served: Path, fingerprint: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """As the web server runs it: no --config, no state directory."""
    return spoolca("verify-publication", str(export), "--served", str(served),
                   "--fingerprint", fingerprint, env=env)


def _deploy(export: Path, served: Path) -> None:
    served.mkdir(parents=True, exist_ok=True)
    for crl in (export / "crl").glob("*.crl"):
        shutil.copyfile(crl, served / crl.name)


def _fetch_and_verify(ca: CA, cert: Path) -> subprocess.CompletedProcess[str]:
    """A relying party: OpenSSL downloads the CRL its certificate names, and checks."""
    return subprocess.run(["openssl", "verify", "-crl_download", "-crl_check", "-CAfile",
                           str(ca.outgoing / "ca" / "ca-chain.pem"), str(cert)],
                          capture_output=True, text=True, timeout=60)


@needs_nginx
def test_what_verify_publication_passes_nginx_serves_and_openssl_fetches(ca: CA,
                                                                       tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/pki/intermediate.crl"
    ca.edit_config('crl_url = ""\nissuer_url = ""', f'crl_url = "{url}"\nissuer_url = ""')
    ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
    ca.process()
    cert = ca.outgoing / "www" / "cert.pem"
    assert x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.CRLDistributionPoints).value[0].full_name[0].value == url
    assert ca.run("crl").returncode == 0
    fingerprint, served = fingerprint_of(ca), tmp_path / "www" / "pki"
    first = _export(ca, tmp_path / "s1")
    listed = json.loads((first / "crl" / "publication.json").read_text())["crls"]
    assert {entry["file"]: entry["url"] for entry in listed}["intermediate.crl"] == url
    checked = _verify(first, served, fingerprint)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok: intermediate.crl: #" in checked.stdout and f"for {url}" in checked.stdout
    _deploy(first, served)
    nginx = Nginx(tmp_path / "nginx", f"        location /pki/ {{ root {served.parent}; }}",
                  port=port)
    try:
        fetched = _fetch_and_verify(ca, cert)
        assert fetched.returncode == 0 and "OK" in fetched.stdout, fetched.stdout + fetched.stderr
        assert ca.run("revoke", ca.result("www")["serial"]).returncode == 0
        second = _export(ca, tmp_path / "s2")
        checked = _verify(second, served, fingerprint)
        assert checked.returncode == 0, checked.stdout
        _deploy(second, served)
        fetched = _fetch_and_verify(ca, cert)
        assert fetched.returncode != 0 and "certificate revoked" in fetched.stdout + fetched.stderr
        rolled = _verify(first, served, fingerprint)  # the first stick again: older
        assert rolled.returncode == 1
        assert "REFUSED: intermediate.crl: rolled back: #" in rolled.stdout, rolled.stdout
    finally:
        nginx.stop()


def test_a_foreign_edited_or_lapsed_publication_is_refused(ca: CA, tmp_path: Path):
    assert ca.run("crl").returncode == 0
    fingerprint, served = fingerprint_of(ca), tmp_path / "served"
    export = _export(ca, tmp_path / "s1")
    assert _verify(export, served, fingerprint).returncode == 0

    foreign = tmp_path / "foreign"
    shutil.copytree(export, foreign)
    real = x509.load_der_x509_crl((export / "crl" / "intermediate.crl").read_bytes())
    other = ec.generate_private_key(ec.SECP384R1())
    forged = (x509.CertificateRevocationListBuilder().issuer_name(real.issuer)
              .last_update(real.last_update_utc).next_update(real.next_update_utc)  # type: ignore[arg-type]
              .add_extension(x509.CRLNumber(10 ** 30), False).sign(other, hashes.SHA384()))
    (foreign / "crl" / "intermediate.crl").write_bytes(forged.public_bytes(Encoding.DER))
    refused = _verify(foreign, served, fingerprint)
    assert refused.returncode == 1
    assert "REFUSED: intermediate.crl: not the file the manifest lists" in refused.stdout

    (foreign / "crl" / "intermediate.crl").write_bytes(real.public_bytes(Encoding.DER))
    (foreign / "crl" / "crl-bundle.pem").write_bytes(forged.public_bytes(Encoding.PEM))
    refused = _verify(foreign, served, fingerprint)
    assert refused.returncode == 1 and refused.stdout.count("REFUSED") == 1
    assert "REFUSED: crl-bundle.pem: not the file the manifest lists" in refused.stdout

    edited = tmp_path / "edited"
    shutil.copytree(export, edited)
    manifest = edited / "crl" / "publication.json"
    manifest.write_text(manifest.read_text().replace('"number": ', '"number": 1'))
    refused = _verify(edited, served, fingerprint)
    assert refused.returncode == 1 and "REFUSED: publication.json: not exactly one good " \
        "signature" in refused.stdout, refused.stdout

    stranger = _verify(export, served, "0" * 40)  # not the appliance's key: nothing served
    assert stranger.returncode == 1 and "ok:" not in stranger.stdout
    assert "REFUSED: publication.json: the given key is not 0000" in stranger.stdout

    clock = FakeClock(tmp_path)
    clock.set(dt.timedelta(days=40))  # the intermediate's CRL lives 30 days
    lapsed = _verify(export, served, fingerprint, env=clock.env)
    assert lapsed.returncode == 1
    assert "REFUSED: intermediate.crl: lapsed: its nextUpdate" in lapsed.stdout, lapsed.stdout
    assert "ok: root.crl" in lapsed.stdout  # the root's lives 180 days


def test_an_export_without_its_ca_files_is_made_and_refused_on_the_web_server(ca: CA,
                                                                              tmp_path: Path):
    """A restored appliance whose service published its CRLs and stopped before its CA
    files (the model test found `media export` crashing there): the export is made, and
    verify-publication refuses those CRLs, saying to export again."""
    fingerprint = fingerprint_of(ca)
    shutil.rmtree(ca.outgoing / "ca")
    export = _export(ca, tmp_path / "s1")
    refused = _verify(export, tmp_path / "served", fingerprint)
    assert refused.returncode == 1 and "ok:" not in refused.stdout
    assert "REFUSED: intermediate.crl: its CA certificate is not on this export" in \
        refused.stdout, refused.stdout


def test_an_export_without_crls_has_nothing_to_publish(ca: CA, tmp_path: Path):
    """A restored appliance exported before its service made its CRLs: said, exit 0 (the
    model test found it exiting 1 without a word)."""
    fingerprint = fingerprint_of(ca)
    for crl in (ca.outgoing / "crl").glob("*.crl"):
        crl.unlink()
    done = _verify(_export(ca, tmp_path / "s1"), tmp_path / "served", fingerprint)
    assert done.returncode == 0 and done.stdout.startswith("nothing to publish"), done.stdout


def _recipe(after: str) -> str:
    """The first ```sh block after AFTER in docs/operator/publication.md, as printed."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "operator" / "publication.md"
            ).read_text()
    return text[text.index(after):].split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_documented_recipes_serve_a_series_and_never_roll_back(ca: CA, tmp_path: Path):
    """publish-crls and serve-presigned, run as the docs print them (paths and the
    fingerprint filled in): a series is kept and served when its date comes; the next
    export (a newer CRL) deletes it, so the cron job cannot put an older CRL back; a
    replayed stick is refused and changes nothing."""
    import os
    import sys

    www, series = tmp_path / "www", tmp_path / "series"
    www.mkdir()
    fingerprint = fingerprint_of(ca)
    scripts = {}
    for name, after in (("publish-crls", "## A deployment step"),
                        ("serve-presigned", "**A pre-signed series**")):
        text = _recipe(after).replace("/var/www/pki", str(www)) \
            .replace("/srv/pki-presigned", str(series)) \
            .replace("0123456789ABCDEF0123456789ABCDEF01234567", fingerprint)
        scripts[name] = tmp_path / name
        scripts[name].write_text(text)
    clock = FakeClock(tmp_path)
    env = {**os.environ, **clock.env,
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def run(name: str, argument: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(scripts[name]), str(argument)], env=env,
                              capture_output=True, text=True, timeout=120)

    assert ca.run("crl", "--presign", "2", "--ca", "intermediate").returncode == 0
    first = _export(ca, tmp_path / "stick1")
    deployed = run("publish-crls", first.parent)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert (www / "intermediate.crl").read_bytes() == \
        (first / "crl" / "intermediate.crl").read_bytes()
    presigned = sorted(series.glob("intermediate--from-*.crl"))
    assert len(presigned) == 2
    assert run("serve-presigned", series).returncode == 0  # not yet: nothing changes
    assert (www / "intermediate.crl").read_bytes() == \
        (first / "crl" / "intermediate.crl").read_bytes()
    clock.set(dt.timedelta(days=21))  # the first of the series is due
    assert run("serve-presigned", series).returncode == 0
    assert (www / "intermediate.crl").read_bytes() == presigned[0].read_bytes()
    # The trip comes back: the appliance's newer CRL, and the series is gone.
    moment = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ca.run("clock", "confirm", "--time", moment, env=clock.env).returncode == 0
    assert ca.run("crl", "--ca", "intermediate", env=clock.env).returncode == 0
    second = tmp_path / "stick2"
    second.mkdir()
    assert ca.run("media", "export", str(second), env=clock.env).returncode == 0
    deployed = run("publish-crls", second)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    newest = (second / "spoolca-results" / "crl" / "intermediate.crl").read_bytes()
    assert not series.exists() and (www / "intermediate.crl").read_bytes() == newest
    clock.set(dt.timedelta(days=45))  # past the second of the series: the cron runs on
    run("serve-presigned", series)
    assert (www / "intermediate.crl").read_bytes() == newest
    replay = run("publish-crls", first.parent)  # the counter-case: the first stick again
    assert replay.returncode != 0 and "rolled back" in replay.stdout
    assert (www / "intermediate.crl").read_bytes() == newest
