"""A real mutual-TLS handshake with Python's ssl module, both sides verifying our chain."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from tests.pki import CA, init_ca, key_pem, make_csr, pem


def _issue(ca: CA, folder: str, name: str, cn: str, tmp_path: Path, sans=None) -> tuple[Path, Path]:
    key, csr = make_csr(cn, sans=sans)
    ca.submit(f"{folder}/{name}.csr", pem(csr))
    ca.process()
    assert ca.result(name)["status"] == "issued", ca.result(name)
    key_file = tmp_path / f"{name}.key"
    key_file.write_bytes(key_pem(key))
    return ca.outgoing / name / "fullchain.pem", key_file


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str,
               server_errors: list[BaseException] | None = None) -> str:
    """Run one handshake on loopback; return the peer subject the server saw, or raise.

    With `server_errors`, what the server side raised is collected there for the caller
    to judge, instead of failing the handshake."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        seen: dict[str, object] = {}

        def serve() -> None:
            connection, _ = listener.accept()
            connection.settimeout(10)
            try:
                with server_ctx.wrap_socket(connection, server_side=True) as tls:
                    seen["peer"] = tls.getpeercert()
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                seen["error"] = exc

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    client_ctx.wrap_socket(raw, server_hostname=hostname) as tls:
                if tls.recv(2) != b"ok":  # TLS 1.3: a refused client learns it here
                    raise ConnectionError("the server closed the connection")
        finally:
            thread.join(timeout=10)
            if server_errors is not None and "error" in seen:
                server_errors.append(seen["error"])  # type: ignore[arg-type]
        assert "error" not in seen, seen.get("error")
        return str(seen["peer"]["subject"])  # type: ignore[index]


def _contexts(ca_root: Path, server: tuple[Path, Path], client: tuple[Path, Path] | None,
              client_trust: Path | None = None) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*server)
    server_ctx.load_verify_locations(ca_root)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(client_trust or ca_root))
    if client:
        client_ctx.load_cert_chain(*client)
    return server_ctx, client_ctx


class TestMutualTLS:
    def test_server_and_client_certificates_complete_a_handshake(self, ca: CA, tmp_path):
        """Both sides verify: the server's fullchain and the client's, against the root."""
        server = _issue(ca, "server", "tls", "tls.sample.com", tmp_path)
        client = _issue(ca, "client", "alice", "alice@sample.com", tmp_path, sans=[])
        root = ca.outgoing / "ca" / "root.pem"
        peer = _handshake(*_contexts(root, server, client), hostname="tls.sample.com")
        assert "alice@sample.com" in peer

    def test_wrong_hostname_fails(self, ca: CA, tmp_path):
        """Counter-case: the client refuses a certificate for another name."""
        server = _issue(ca, "server", "tls", "tls.sample.com", tmp_path)
        client = _issue(ca, "client", "alice", "alice@sample.com", tmp_path, sans=[])
        root = ca.outgoing / "ca" / "root.pem"
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            _handshake(*_contexts(root, server, client), hostname="other.sample.com")

    def test_server_certificate_from_another_ca_fails(self, ca: CA, tmp_path):
        """Counter-case: a client trusting only another CA's root refuses our server."""
        other = init_ca(tmp_path / "other", "--no-passphrase")
        server = _issue(ca, "server", "tls", "tls.sample.com", tmp_path)
        root = ca.outgoing / "ca" / "root.pem"
        other_root = other.outgoing / "ca" / "root.pem"
        with pytest.raises(ssl.SSLCertVerificationError):
            _handshake(*_contexts(root, server, None, client_trust=other_root),
                       hostname="tls.sample.com")

    def test_client_certificate_from_another_ca_is_refused(self, ca: CA, tmp_path):
        """Counter-case: the server refuses a client certificate it cannot chain to its root."""
        other = init_ca(tmp_path / "other", "--no-passphrase")
        server = _issue(ca, "server", "tls", "tls.sample.com", tmp_path)
        stranger = _issue(other, "client", "mallory", "mallory@sample.com", tmp_path, sans=[])
        root = ca.outgoing / "ca" / "root.pem"
        refused: list[BaseException] = []
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake(*_contexts(root, server, stranger), hostname="tls.sample.com",
                       server_errors=refused)
        assert len(refused) == 1 and isinstance(refused[0], ssl.SSLError)
        assert "certificate verify failed" in str(refused[0])
