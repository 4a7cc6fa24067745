"""The configuration: spoolca.toml read and checked (settings), its [policy] rules
(policy), what a certificate is for (certtypes, with the shipped types in
certificate-types.toml), a subordinate CA's constraints (constraints), the typed TOML reader that
reports every mistake at once (tomlreader), and the file init writes (text, from
template.toml). Importing the package gives the reader's public names."""

from spoolca.config.settings import (
    AUTHORITIES,
    DN_RULES,
    AuthoritySettings,
    CertificateType,
    Config,
    KeyStore,
    LintMode,
    Policy,
    Profile,
    load_config,
)

__all__ = ["AUTHORITIES", "DN_RULES", "AuthoritySettings", "CertificateType",
           "Config", "KeyStore", "LintMode", "Policy", "Profile", "load_config"]
