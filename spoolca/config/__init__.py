"""The configuration: spoolca.toml read and checked (settings), its [policy] rules
(policy), a subordinate CA's constraints (constraints), the typed TOML reader that
reports every mistake at once (tomlreader), and the file init writes (text, from
template.toml). Importing the package gives the reader's public names."""

from spoolca.config.settings import (
    AUTHORITIES,
    DN_RULES,
    PROFILE_KINDS,
    AuthoritySettings,
    Config,
    KeyStore,
    LintMode,
    Policy,
    Profile,
    ProfileKind,
    load_config,
)

__all__ = ["AUTHORITIES", "DN_RULES", "PROFILE_KINDS", "AuthoritySettings", "Config",
           "KeyStore", "LintMode", "Policy", "Profile", "ProfileKind", "load_config"]
