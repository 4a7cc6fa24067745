"""The CRL bundle judged by a real OpenVPN (issue 29 item 5): `crl-verify` with
crl/crl-bundle.pem. A client is let in; once revoked (the bundle republished; OpenVPN
reads the file at each new connection) it is refused. OpenVPN checks the client's issuer
only, and fails open without that CRL: with the root's CRL alone a revoked client gets in
(the counter-case, and why the file must hold the issuing CA's CRL).

Both ends run in point-to-point TLS mode over UDP on 127.0.0.1 with `--dev null`: no tun
device, the same certificate and CRL checks as a full VPN.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nginx import free_port
from tests.pki import CA, issue_tls_parties, wait_for

OPENVPN = "/usr/sbin/openvpn"
pytestmark = pytest.mark.skipif(not os.path.exists(OPENVPN), reason="needs openvpn")


@pytest.fixture
def vpn(ca: CA, tmp_path: Path) -> Iterator[tuple[CA, dict[str, tuple[Path, Path]], Path]]:
    """A server certificate and two client certificates, issued in one pass."""
    yield ca, issue_tls_parties(ca, tmp_path, ("gw", "vpn.sample.com")), tmp_path


class Tunnel:
    """One OpenVPN server and one client; the server's log says what it decided."""

    def __init__(self, work: Path, chain: Path, server: tuple[Path, Path],
                 client: tuple[Path, Path], crl: Path) -> None:
        port = free_port()
        self.server_log, self.client_log = work / "server.log", work / "client.log"
        common = ["--dev", "null", "--proto", "udp4", "--ca", str(chain), "--verb", "3",
                  "--ping", "1", "--ping-exit", "60", "--data-ciphers", "AES-256-GCM"]
        self.server = subprocess.Popen(
            [OPENVPN, *common, "--local", "127.0.0.1", "--lport", str(port), "--tls-server",
             "--cert", str(server[0]), "--key", str(server[1]), "--dh", "none",
             "--crl-verify", str(crl), "--remote-cert-tls", "client",
             "--log", str(self.server_log)], stdout=subprocess.DEVNULL)
        self.client = subprocess.Popen(
            [OPENVPN, *common, "--remote", "127.0.0.1", str(port), "--nobind",
             "--tls-client", "--cert", str(client[0]), "--key", str(client[1]),
             "--remote-cert-tls", "server", "--log", str(self.client_log)],
            stdout=subprocess.DEVNULL)

    def said(self, log: Path, text: str) -> bool:
        return log.exists() and text in log.read_text(errors="replace")

    def stop(self) -> None:
        for process in (self.client, self.server):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


def _connects(work: Path, ca: CA, made: dict[str, tuple[Path, Path]], client: str,
              crl: Path) -> bool:
    """Whether CLIENT completes the TLS handshake against a server checking CRL."""
    work.mkdir()
    tunnel = Tunnel(work, ca.outgoing / "ca" / "ca-chain.pem", made["gw"], made[client], crl)
    try:
        wait_for(lambda: tunnel.said(tunnel.client_log, "Initialization Sequence Completed")
                 or tunnel.said(tunnel.server_log, "VERIFY ERROR")
                 or tunnel.said(tunnel.server_log, "CRL"), timeout=60,
                 what="OpenVPN's verdict")
        wait_for(lambda: tunnel.said(tunnel.client_log, "Initialization Sequence Completed")
                 or tunnel.said(tunnel.server_log, "TLS Error")
                 or tunnel.said(tunnel.server_log, "VERIFY ERROR"), timeout=60,
                 what="the handshake to end")
        return tunnel.said(tunnel.client_log, "Initialization Sequence Completed")
    finally:
        tunnel.stop()


def test_openvpn_refuses_a_revoked_client_with_the_bundle(vpn):
    ca, made, work = vpn
    bundle = ca.outgoing / "crl" / "crl-bundle.pem"
    served = work / "crl-bundle.pem"  # the VPN server's copy, deployed after each trip
    shutil.copyfile(bundle, served)
    assert _connects(work / "alice-1", ca, made, "alice", served)
    assert ca.run("revoke", ca.result("bob")["serial"], "--reason",
                  "keyCompromise").returncode == 0
    shutil.copyfile(bundle, served)
    assert not _connects(work / "bob", ca, made, "bob", served)
    assert "certificate revoked" in (work / "bob" / "server.log").read_text()
    assert _connects(work / "alice-2", ca, made, "alice", served)


def test_openvpn_fails_open_without_the_issuer_s_crl(vpn):
    """Why the bundle must hold the issuing CA's CRL: OpenVPN 2.6 checks the client's
    issuer only, and when the file has no CRL of that issuer it warns ("unable to get
    certificate CRL") and lets the client in, revoked or not. With the root's CRL alone, a
    revoked client connects; with the bundle it is refused."""
    ca, made, work = vpn
    assert ca.run("revoke", ca.result("bob")["serial"]).returncode == 0
    assert _connects(work / "root-only", ca, made, "bob", ca.outgoing / "crl" / "root.crl.pem")
    assert "unable to get certificate CRL" in (work / "root-only" / "server.log").read_text()
    assert not _connects(work / "bundle", ca, made, "bob",
                         ca.outgoing / "crl" / "crl-bundle.pem")
