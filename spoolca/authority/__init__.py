"""The CAs: the init ceremony, scoped unlocking of keys, revocation and CRL publication."""
