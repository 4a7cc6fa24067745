"""Fixtures: a fresh CA per test (real `spoolca init`), in a private temp directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.pki import CA, init_ca


@pytest.fixture(scope="session")
def _ca_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One unencrypted CA per test session; each test gets its own copy."""
    directory = tmp_path_factory.mktemp("template") / "ca"
    init_ca(directory, "--no-passphrase", "--key-type", "ec-p384")
    return directory


@pytest.fixture
def ca(_ca_template: Path, tmp_path: Path) -> CA:
    """A CA of our own: a copy of the session's, so tests never share a register."""
    target = tmp_path / "ca"
    shutil.copytree(_ca_template, target, symlinks=True)
    return CA(target)
