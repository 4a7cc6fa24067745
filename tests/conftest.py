"""Fixtures: a fresh CA per test (real `spoolca init`), in a private temp directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from spoolca.openpgp import stop_agent
from tests.pki import CA, CREATED, init_ca


@pytest.fixture(scope="session")
def _ca_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One unencrypted CA per test session; each test gets its own copy."""
    directory = tmp_path_factory.mktemp("template") / "ca"
    init_ca(directory, "--no-passphrase", "--key-type", "ec-p384")
    yield directory
    stop_agent(directory / "gnupg")


@pytest.fixture
def ca(_ca_template: Path, tmp_path: Path) -> CA:
    """A CA of our own: a copy of the session's, so tests never share a register."""
    target = tmp_path / "ca"
    shutil.copytree(_ca_template, target, symlinks=True,
                    ignore=shutil.ignore_patterns("S.*"))  # gpg-agent's sockets
    CREATED.append(target)
    return CA(target)


@pytest.fixture(autouse=True)
def _stop_gpg_agents():
    """gpg starts an agent per home; stop those a test's CAs started when it ends."""
    yield
    while CREATED:
        stop_agent(CREATED.pop() / "gnupg")
