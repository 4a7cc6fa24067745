"""Configuration: the documented example, validation that lists every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoolca.config import load_config
from spoolca.config.text import render_config
from spoolca.errors import ConfigError
from tests.pki import CA

REPO = Path(__file__).resolve().parent.parent


class TestDocumentedConfig:
    def test_example_in_config_folder_is_what_init_writes(self):
        """config/spoolca.toml is the text init writes, so the documentation cannot drift."""
        assert (REPO / "config" / "spoolca.toml").read_text() == render_config()

    def test_example_loads_with_the_seed_policy(self, tmp_path):
        """The default policy is the seeds' policy_match, in its order."""
        path = tmp_path / "spoolca.toml"
        path.write_text(render_config())
        config = load_config(path)
        assert config.policy.dn == (
            ("countryName", "match"), ("stateOrProvinceName", "match"),
            ("organizationName", "match"), ("organizationalUnitName", "optional"),
            ("commonName", "supplied"), ("emailAddress", "optional"))
        assert config.profiles["server"].validity_days == 375
        assert config.profiles["subca"].issuer == "root"
        assert config.profiles["server"].allowed_domains == ()
        assert config.lint == "pkix"


class TestValidation:
    def write(self, tmp_path, text: str) -> Path:
        path = tmp_path / "spoolca.toml"
        path.write_text(text)
        return path

    def test_every_problem_is_listed_at_once(self, tmp_path):
        """A typo, a wrong type, a weak RSA floor and a bad rule: all four named by key path."""
        text = render_config().replace("allow_wildcards = false", "allow_wildcard = false") \
            .replace("validity_days = 375", 'validity_days = "375"', 1) \
            .replace("rsa_min_bits = 2048", "rsa_min_bits = 1024") \
            .replace('countryName = "match"', 'countryName = "maybe"')
        with pytest.raises(ConfigError) as caught:
            load_config(self.write(tmp_path, text))
        problems = caught.value.problems
        assert "profiles.server.allow_wildcard: unknown key" in problems
        assert "profiles.server.validity_days: must be an integer" in problems
        assert "policy.keys.rsa_min_bits: may not be below 2048" in problems
        assert "policy.dn.countryName: must be one of match, supplied, optional" in problems

    def test_subca_must_be_issued_by_the_root(self, tmp_path):
        """The intermediate has pathlen:0, so a subca profile issued by it is refused."""
        text = render_config().replace('kind = "subca"             # CA:TRUE pathlen:0, KU '
                                       'keyCertSign + cRLSign, signed by the root\nissuer = '
                                       '"root"', 'kind = "subca"\nissuer = "intermediate"')
        with pytest.raises(ConfigError, match="a CA profile is issued by the root"):
            load_config(self.write(tmp_path, text))

    def test_urls_must_be_http(self, tmp_path):
        """CRL and AIA URLs are fetched over plain HTTP (RFC 5280)."""
        text = render_config().replace('crl_url = ""      #', 'crl_url = "https://x/r.crl" #')
        with pytest.raises(ConfigError, match="crl_url: must be an http:// URL"):
            load_config(self.write(tmp_path, text))

    def test_not_toml(self, tmp_path):
        """A broken file is one sentence naming it."""
        with pytest.raises(ConfigError, match="not valid TOML"):
            load_config(self.write(tmp_path, "lint = \n"))

    def test_bad_config_on_the_command_line_is_exit_2(self, ca: CA):
        """The CLI prints one line and exits 2, no traceback."""
        ca.edit_config('lint = "pkix"', 'lint = "sometimes"')
        result = ca.run("list")
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and 'lint: must be "pkix" or "off"' in result.stderr

    def test_config_from_the_environment(self, ca: CA):
        """$SPOOLCA_CONFIG is used when --config is not given."""
        from tests.pki import spoolca

        result = spoolca("list", "--json", env={"SPOOLCA_CONFIG": str(ca.config)})
        assert result.returncode == 0 and result.stdout.strip() == "[]"

    def test_missing_config(self, tmp_path):
        """No configuration at all: exit 2 naming the path."""
        from tests.pki import spoolca

        result = spoolca("--config", str(tmp_path / "none.toml"), "list")
        assert result.returncode == 2 and "none.toml" in result.stderr


class TestReadme:
    def test_ci_runs_the_readme_test_command(self):
        """.ci/run calls the README's test command verbatim."""
        readme = (REPO / "README.md").read_text()
        command = readme.split("**Run the tests**")[1].split("```sh\n")[1].split("\n```")[0]
        assert command in (REPO / ".ci" / "run").read_text()
