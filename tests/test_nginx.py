"""The CRL bundle judged by a real nginx doing mutual TLS (issue 29 item 5): nginx's
`ssl_crl` checks every level of the chain, so it needs every CA's CRL in one file.

A client certificate is accepted with crl/crl-bundle.pem; once it is revoked and the
bundle republished (nginx reloaded, as an operator's deployment step does), the same
client is refused. The counter-case: with the intermediate's CRL alone, nginx refuses
every client, the good one too.
"""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pki import CA, key_pem, make_csr, pem, wait_for

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None and not Path(
    "/usr/sbin/nginx").exists(), reason="nginx (Debian nginx, which .ci/run installs) is "
    "not installed")

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Nginx:
    """nginx in the foreground, its prefix, logs and pid in a test folder."""

    def __init__(self, folder: Path, server: tuple[Path, Path], trust: Path, crl: Path):
        self.folder, self.port = folder, _free_port()
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        self.conf = folder / "nginx.conf"
        self.conf.write_text(f"""
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/logs/error.log info;
events {{ worker_connections 16; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi; uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {server[0]};
        ssl_certificate_key {server[1]};
        ssl_client_certificate {trust};
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_crl {crl};
        location / {{ return 200 "hello $ssl_client_s_dn\\n"; }}
    }}
}}
""")
        self.stderr = folder / "logs" / "stderr.log"
        with self.stderr.open("wb") as stderr:
            self.process = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(self.conf)],
                                            stdout=subprocess.DEVNULL, stderr=stderr)
        wait_for(self._listening, timeout=20, what="nginx listening")

    def _listening(self) -> bool:
        assert self.process.poll() is None, self.stderr.read_text()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def reload(self) -> None:
        """SIGHUP: nginx re-reads its configuration, the CRL file with it."""
        pid = self.process.pid
        log = self.folder / "logs" / "error.log"
        seen = log.read_text().count("reconfiguring")
        self.process.send_signal(signal.SIGHUP)
        wait_for(lambda: log.read_text().count("reconfiguring") > seen, timeout=20,
                 what="nginx reconfigured")
        assert self.process.pid == pid

    def get(self, trust: Path, client: tuple[Path, Path]) -> str:
        """The status line nginx answers a client presenting CLIENT."""
        context = ssl.create_default_context(cafile=str(trust))
        context.load_cert_chain(*client)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="www.sample.com") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: www.sample.com\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
        return answer.decode(errors="replace").splitlines()[0]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


@pytest.fixture
def shop(ca: CA, tmp_path: Path) -> Iterator[tuple[CA, dict[str, tuple[Path, Path]], Path]]:
    """A server certificate and two client certificates, issued in one pass."""
    made = {}
    for folder, name, cn in (("server", "www", "www.sample.com"), ("client", "alice", "alice"),
                             ("client", "bob", "bob")):
        key, csr = make_csr(cn, sans=None if folder == "server" else [])
        ca.submit(f"{folder}/{name}.csr", pem(csr))
        (tmp_path / f"{name}.key").write_bytes(key_pem(key))
        made[name] = (ca.outgoing / name / "fullchain.pem", tmp_path / f"{name}.key")
    ca.process()
    for name in made:
        assert ca.result(name)["status"] == "issued", ca.result(name)
    yield ca, made, tmp_path


def test_nginx_refuses_a_revoked_client_after_the_bundle_is_republished(shop):
    ca, made, work = shop
    chain = ca.outgoing / "ca" / "ca-chain.pem"
    bundle = ca.outgoing / "crl" / "crl-bundle.pem"
    assert bundle.read_bytes().count(b"-----BEGIN X509 CRL-----") == 2  # root, intermediate
    served = work / "served-crl.pem"  # what the web server holds: a copy, deployed
    shutil.copyfile(bundle, served)
    nginx = Nginx(work / "nginx", made["www"], chain, served)
    try:
        assert nginx.get(chain, made["alice"]) == "HTTP/1.1 200 OK"
        assert nginx.get(chain, made["bob"]) == "HTTP/1.1 200 OK"
        assert ca.run("revoke", ca.result("bob")["serial"]).returncode == 0
        shutil.copyfile(bundle, served)
        nginx.reload()
        assert nginx.get(chain, made["alice"]) == "HTTP/1.1 200 OK"
        assert nginx.get(chain, made["bob"]) == "HTTP/1.1 400 Bad Request"
        assert "certificate revoked" in (work / "nginx" / "logs" / "error.log").read_text()
    finally:
        nginx.stop()


def test_with_the_intermediate_s_crl_alone_nginx_refuses_every_client(shop):
    """Why the bundle: nginx checks a CRL for every level, root's included."""
    ca, made, work = shop
    chain = ca.outgoing / "ca" / "ca-chain.pem"
    nginx = Nginx(work / "nginx", made["www"], chain,
                  ca.outgoing / "crl" / "intermediate.crl.pem")
    try:
        assert nginx.get(chain, made["alice"]) == "HTTP/1.1 400 Bad Request"
        assert "unable to get certificate CRL" in (work / "nginx" / "logs" / "error.log"
                                                    ).read_text()
    finally:
        nginx.stop()
