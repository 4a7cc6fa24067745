"""Pure PKI: requests, names, policy, extension profiles, issuance, CRLs, lint.

No I/O; time is passed in."""
