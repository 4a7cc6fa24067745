"""PKI notation shared by configuration and X.509 code: distinguished names in OpenSSL's
spellings, the DN attributes spoolca knows, and the few DER pieces written by hand."""
