"""Processing: the CA session, batches, revocation requests, dry runs, request authorization."""
