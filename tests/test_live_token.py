"""The daemon's unit, live, with its CA keys in a SoftHSM2 token: installed from the
offline bundle, the token made as the README says, the shipped drop-in installed, under a
real systemd with all of the unit's sandboxing. Needs root (see test_live.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pki import pem, wait_for
from tests.test_live import (
    ROOT_SUBJECT,
    STATE,
    Sandbox,
    _available,
    _readme_csr,
    booted,
    bundle,
    credential_step,
)

TOKENS = f"{STATE}/softhsm/tokens"

# README.md, "Key custody" (SoftHSM2) with "Running under systemd", steps 1-4.
INSTALL = f"""
set -euo pipefail
/bundle/install.sh
install -d -m 0700 {TOKENS}
printf 'directories.tokendir = {TOKENS}\\nobjectstore.backend = file\\n' \\
  > {STATE}/softhsm/softhsm2.conf
export SOFTHSM2_CONF={STATE}/softhsm/softhsm2.conf
umask 077; printf 'live token user pin' > /root/ca-pin
# the test's throwaway PINs on argv; the README's softhsm2-util asks for them instead
softhsm2-util --init-token --free --label spoolca --so-pin 'live so pin' \\
  --pin "$(cat /root/ca-pin)" > /dev/null
spoolca init --dir {STATE} --root-subject "{ROOT_SUBJECT}" --key-store pkcs11 \\
  --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token spoolca \\
  --passphrase-file /root/ca-pin
{credential_step("/root/ca-pin")}install -D -m 0644 /bundle/systemd/drop-ins/softhsm2.conf \\
  /etc/systemd/system/spoolca.service.d/softhsm2.conf
systemctl daemon-reload && systemctl enable --now spoolca
"""


@pytest.fixture(scope="module")
def live_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    _available()
    if not Path("/usr/lib/softhsm/libsofthsm2.so").exists():
        pytest.fail("SoftHSM2 is not installed (.ci/run installs it)")
    work = tmp_path_factory.mktemp("live-token")
    data = work / "data"
    data.mkdir()
    for name in ("t1", "t2"):
        (data / f"{name}.csr").write_bytes(pem(_readme_csr(f"{name}.example.com")))
    with booted(bundle(tmp_path_factory), data, "spoolca-live-token", INSTALL) as sandbox:
        yield sandbox


class TestLiveToken:
    def test_the_unit_signs_with_the_token(self, live_token: Sandbox):
        """READY under the full sandbox; a request is issued by the token's key and
        verifies; the log names the token key that signed; no key file exists."""
        assert live_token.value("ActiveState") == "active"
        live_token.drop("t1.csr")
        assert live_token.result("t1")["status"] == "issued"
        live_token.sh(f"openssl verify -CAfile {STATE}/spool/outgoing/ca/ca-chain.pem "
                      f"{STATE}/spool/outgoing/t1/cert.pem")
        assert live_token.sh(f"ls -A {STATE}/keys").stdout == ""
        shown = json.loads(live_token.sh(f"spoolca --config {STATE}/spoolca.toml audit show "
                                         "--json --event key.unlocked").stdout)
        assert any(e["data"].get("key_store", {}).get("uri") ==
                   "pkcs11:token=spoolca;object=spoolca-intermediate" for e in shown)

    def test_a_missing_token_is_a_status_and_its_return_resumes_issuing(
            self, live_token: Sandbox):
        """The token taken away and the service restarted: active, STATUS= says why, the
        request waits; the token back, the request is issued without a restart."""
        live_token.sh(f"systemctl stop spoolca && mv {TOKENS} {STATE}/softhsm/away && "
                      f"install -d -m 0700 -o spoolca -g spoolca {TOKENS} && "
                      "systemctl start spoolca")
        assert live_token.value("ActiveState") == "active"
        wait_for(lambda: "is not present" in live_token.value("StatusText"), 30,
                 "a STATUS naming the missing token")
        assert live_token.value("StatusText").startswith("REFUSING TO ISSUE: the token")
        live_token.drop("t2.csr")
        started = time.monotonic()
        wait_for(lambda: "1 queued" in live_token.value("StatusText"), 30, "t2 queued")
        assert live_token.sh(f"test -e {STATE}/spool/outgoing/t2", check=False).returncode != 0
        live_token.sh(f"rmdir {TOKENS} && mv {STATE}/softhsm/away {TOKENS}")
        assert live_token.result("t2", timeout=60)["status"] == "issued"
        assert time.monotonic() - started < 60
        assert live_token.value("NRestarts") == "0"
