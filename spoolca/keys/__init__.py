"""Key custody: key algorithms, encrypted key files, signers."""
