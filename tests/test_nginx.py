"""The CRL bundle judged by a real nginx doing mutual TLS (issue 29 item 5): nginx's
`ssl_crl` checks every level of the chain, so it needs every CA's CRL in one file.

A client certificate is accepted with crl/crl-bundle.pem; once it is revoked and the
bundle republished (nginx reloaded, as an operator's deployment step does), the same
client is refused. The counter-case: with the intermediate's CRL alone, nginx refuses
every client, the good one too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nginx import Nginx, needs_nginx
from tests.pki import CA, issue_tls_parties, wait_for

pytestmark = needs_nginx


def _mutual_tls(folder: Path, server: tuple[Path, Path], trust: Path, crl: Path) -> Nginx:
    """nginx asking every client for a certificate of TRUST's chain, checked against CRL."""
    return Nginx(folder, f"""
        ssl_certificate {server[0]};
        ssl_certificate_key {server[1]};
        ssl_client_certificate {trust};
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_crl {crl};
        location / {{ return 200 "hello $ssl_client_s_dn\\n"; }}""", tls=True)


@pytest.fixture
def shop(ca: CA, tmp_path: Path) -> Iterator[tuple[CA, dict[str, tuple[Path, Path]], Path]]:
    """A server certificate and two client certificates, issued in one pass."""
    yield ca, issue_tls_parties(ca, tmp_path, ("www", "www.sample.com")), tmp_path


def test_nginx_refuses_a_revoked_client_after_the_bundle_is_republished(shop):
    ca, made, work = shop
    chain = ca.outgoing / "ca" / "ca-chain.pem"
    bundle = ca.outgoing / "crl" / "crl-bundle.pem"
    assert bundle.read_bytes().count(b"-----BEGIN X509 CRL-----") == 2  # root, intermediate
    served = work / "served-crl.pem"  # what the web server holds: a copy, deployed
    shutil.copyfile(bundle, served)
    nginx = _mutual_tls(work / "nginx", made["www"], chain, served)
    try:
        assert nginx.get_tls(chain, made["alice"]) == "HTTP/1.1 200 OK"
        assert nginx.get_tls(chain, made["bob"]) == "HTTP/1.1 200 OK"
        assert ca.run("revoke", ca.result("bob")["serial"]).returncode == 0
        shutil.copyfile(bundle, served)
        nginx.reload()  # its new workers take the new file; the old ones finish first
        wait_for(lambda: nginx.get_tls(chain, made["bob"]) == "HTTP/1.1 400 Bad Request",
                 timeout=20, what="the revoked client refused")
        assert nginx.get_tls(chain, made["alice"]) == "HTTP/1.1 200 OK"
        assert "certificate revoked" in nginx.error_log
    finally:
        nginx.stop()


def test_with_the_intermediate_s_crl_alone_nginx_refuses_every_client(shop):
    """Why the bundle: nginx checks a CRL for every level, root's included."""
    ca, made, work = shop
    chain = ca.outgoing / "ca" / "ca-chain.pem"
    nginx = _mutual_tls(work / "nginx", made["www"], chain,
                        ca.outgoing / "crl" / "intermediate.crl.pem")
    try:
        assert nginx.get_tls(chain, made["alice"]) == "HTTP/1.1 400 Bad Request"
        assert "unable to get certificate CRL" in nginx.error_log
    finally:
        nginx.stop()
