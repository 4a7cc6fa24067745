"""A real nginx for tests: in the foreground, its prefix, logs and pid in a test folder,
on a free loopback port (tests/test_nginx.py, tests/test_publication.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.pki import wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
needs_nginx = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx (Debian "
                                 "nginx-light, which .ci/run installs) is not installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Nginx:
    """nginx serving one `server` block (SERVER: its directives, `listen` added)."""

    def __init__(self, folder: Path, server: str, port: int | None = None,
                 tls: bool = False) -> None:
        self.folder, self.port = folder, port or free_port()
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        self.conf = folder / "nginx.conf"
        # Run by root (as tests are here), nginx's workers drop to nobody, who may not
        # read a test's private temp folder.
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf.write_text(f"""
{user}
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
        listen 127.0.0.1:{self.port}{" ssl" if tls else ""};
{server}
    }}
}}
""")
        self.stderr = folder / "logs" / "stderr.log"
        with self.stderr.open("wb") as stderr:
            self.process = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(self.conf)],
                                            stdout=subprocess.DEVNULL, stderr=stderr)
        wait_for(self._listening, timeout=20, what="nginx listening")

    @property
    def error_log(self) -> str:
        return (self.folder / "logs" / "error.log").read_text()

    def _listening(self) -> bool:
        assert self.process.poll() is None, self.stderr.read_text()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def reload(self) -> None:
        """SIGHUP: nginx re-reads its configuration, the files it names with it."""
        seen = self.error_log.count("reconfiguring")
        self.process.send_signal(signal.SIGHUP)
        wait_for(lambda: self.error_log.count("reconfiguring") > seen, timeout=20,
                 what="nginx reconfigured")

    def get_tls(self, trust: Path, client: tuple[Path, Path]) -> str:
        """The status line nginx answers a TLS client presenting CLIENT."""
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
