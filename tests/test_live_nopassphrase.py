"""The daemon's unit, live, for a CA made with `--no-passphrase`: installed from the
offline bundle as the README says (steps 1, 2 and 4: no credential to make), under a real
systemd with all of the unit's sandboxing. The shipped unit once named its credential by
path, and systemd refused to start a unit whose credential file is missing
(status=243/CREDENTIALS, retried every 5 s for ever): such a CA could not run at all.
Needs root (see test_live.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pki import pem, wait_for
from tests.test_live import ROOT_SUBJECT, STATE, Sandbox, _available, _readme_csr, booted, bundle

# README.md, "Running under systemd", steps 1, 2 and 4, with --no-passphrase.
INSTALL = f"""
set -euo pipefail
/bundle/install.sh
spoolca init --dir {STATE} --root-subject "{ROOT_SUBJECT}" --no-passphrase
chown -R spoolca:spoolca {STATE}
systemctl daemon-reload && systemctl enable --now spoolca
"""

# The unit as it was: the credential named by its path.
BY_PATH = """[Service]
LoadCredentialEncrypted=
LoadCredentialEncrypted=spoolca-ca-passphrase:/etc/credstore.encrypted/spoolca-ca-passphrase
"""


@pytest.fixture(scope="module")
def live_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    _available()
    work = tmp_path_factory.mktemp("live-plain")
    data = work / "data"
    data.mkdir()
    for name in ("n1", "n2"):
        (data / f"{name}.csr").write_bytes(pem(_readme_csr(f"{name}.example.com")))
    (data / "by-path.conf").write_text(BY_PATH)
    with booted(bundle(tmp_path_factory), data, "spoolca-live-plain", INSTALL) as sandbox:
        yield sandbox


class TestLiveWithoutPassphrase:
    def test_the_unit_starts_and_issues_with_no_credential(self, live_plain: Sandbox):
        """Active at once, never restarted, no credential loaded; a request is issued and
        verifies; root's own commands (no --config) work, a key among them."""
        assert live_plain.value("ActiveState") == "active"
        assert live_plain.value("NRestarts") == "0"
        assert live_plain.sh("test -e /etc/credstore.encrypted/spoolca-ca-passphrase",
                             check=False).returncode != 0
        live_plain.drop("n1.csr")
        result = live_plain.result("n1")
        assert result["status"] == "issued"
        live_plain.sh(f"openssl verify -CAfile {STATE}/spool/outgoing/ca/ca-chain.pem "
                      f"{STATE}/spool/outgoing/n1/cert.pem")
        for command in ("crl", "status", f"revoke {result['serial']} --reason superseded"):
            done = live_plain.sh(f"cd / && spoolca {command}", check=False)
            assert done.returncode == 0, (command, done.stdout, done.stderr)

    def test_a_credential_named_by_path_keeps_the_unit_from_starting(
            self, live_plain: Sandbox):
        """Counter-case, the unit as it was (a drop-in naming the credential's path): it
        does not start; without the drop-in it starts again and issues."""
        drop_in = "/etc/systemd/system/spoolca.service.d/by-path.conf"
        live_plain.sh(f"install -D -m 0644 /data/by-path.conf {drop_in} && "
                      "systemctl daemon-reload")
        restarted = live_plain.sh("systemctl restart spoolca", check=False)
        assert restarted.returncode != 0
        assert live_plain.value("ExecMainStatus") == "243"  # EXIT_CREDENTIALS
        live_plain.sh(f"rm {drop_in} && systemctl daemon-reload && systemctl reset-failed "
                      "spoolca && systemctl restart spoolca")
        wait_for(lambda: live_plain.value("ActiveState") == "active", 30, "active again")
        live_plain.drop("n2.csr")
        assert live_plain.result("n2")["status"] == "issued"
