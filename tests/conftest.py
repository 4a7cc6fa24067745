"""Fixtures: a fresh CA per test (real `spoolca init`), in a private temp directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from spoolca.keys.openpgp import ApplianceKey, keyring_owner, reap_keyrings, stop_agent
from tests.pki import CA, CREATED, IN_PROCESS, copy_ca, init_ca
from tests.templates import Templates


@pytest.fixture(scope="session")
def _ca_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One unencrypted CA per test session; each test gets its own copy."""
    directory = tmp_path_factory.mktemp("template") / "ca"
    init_ca(directory, "--no-passphrase", "--key-type", "ec-p384")
    yield directory
    stop_agent(directory / "gnupg")


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    """Encrypted and populated CAs, each made once per test process (tests/templates.py)."""
    made = Templates(tmp_path_factory.mktemp("tpl"))
    yield made
    made.close()


@pytest.fixture
def ca(_ca_template: Path, tmp_path: Path) -> CA:
    """A CA of our own: a copy of the session's, so tests never share a register."""
    return copy_ca(_ca_template, tmp_path / "ca")


@pytest.fixture(autouse=True)
def _command_line_mode(request: pytest.FixtureRequest) -> Iterator[None]:
    """Commands in this process, unless the test is marked `subprocess` (or the whole
    run is: SPOOLCA_TESTS_SUBPROCESS=1, to compare the two)."""
    IN_PROCESS["on"] = request.node.get_closest_marker("subprocess") is None and \
        not os.environ.get("SPOOLCA_TESTS_SUBPROCESS")
    yield
    IN_PROCESS["on"] = True


@pytest.fixture(autouse=True)
def _stop_gpg_agents():
    """gpg starts an agent per home; stop those a test's CAs started when it ends (and
    any daemon a failing test left running first)."""
    yield
    from tests.daemon import STARTED

    while STARTED:
        running = STARTED.pop()
        if running.process.poll() is None:
            running.kill()
    while CREATED:
        directory = CREATED.pop()
        stop_agent(directory / "gnupg")
        reap_keyrings(keyring_owner(directory))  # a killed daemon's signers' keyring


@pytest.fixture
def signers(tmp_path):
    """Two real gpg keys: Alice (authorized) and Mallory (known, not authorized); and
    Eve, whose key is not in the keyring at all."""
    keys = {name: ApplianceKey.create(tmp_path / name, None, name)
            for name in ("alice", "mallory", "eve")}
    yield keys
    for name in keys:
        stop_agent(tmp_path / name)


@pytest.fixture
def expired(tmp_path):
    """A real key made (with gpg's --faked-system-time) in 2020, valid for one day, and
    a signature it made then: by now both the key and anything it signed are expired."""
    import gnupg

    home = tmp_path / "expired"
    home.mkdir(mode=0o700)
    gpg = gnupg.GPG(gnupghome=str(home), options=["--faked-system-time", "20200101T000000"])
    key = gpg.gen_key(gpg.gen_key_input(key_type="EDDSA", key_curve="ed25519",
                                        key_usage="sign", expire_date="1d", name_real="old",
                                        no_protection=True))
    yield gpg, key.fingerprint
    stop_agent(home)


@pytest.fixture
def guarded(ca: CA, signers) -> CA:
    (ca.dir / "signers.asc").write_text(signers["alice"].public_key()
                                        + signers["mallory"].public_key())
    ca.edit_config("authorized_signers = []",
                   f'authorized_signers = ["{signers["alice"].fingerprint}"]')
    return ca


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory):
    """The default configuration, as init writes it, for policy called as a function."""
    from spoolca.config import load_config
    from spoolca.config.text import render_config

    path = tmp_path_factory.mktemp("cfg") / "spoolca.toml"
    path.write_text(render_config())
    return load_config(path)


@pytest.fixture(scope="module")
def issuer():
    """A throwaway 'Sample Intermediate CA' of the sample company (P-256), valid 30 days."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.pki import subject

    key = ec.generate_private_key(ec.SECP256R1())
    name = subject("Sample Intermediate CA")
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
