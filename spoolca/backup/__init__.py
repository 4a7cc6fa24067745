"""Backups: one signed archive of everything that cannot be made again, and its restore.

The register, the CA key files exactly as encrypted at rest, the appliance's OpenPGP
home, the configuration and the signers' keyring. The spool is not in it: every result
in outgoing/ is published again from the register by the restored appliance's recovery.
"""
