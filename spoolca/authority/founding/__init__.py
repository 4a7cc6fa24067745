"""Founding a CA: the key ceremony of `spoolca init` (ceremony), the keys it makes in
memory or in a token (newkeys), and the signed paper record of it and of every custody
event (record)."""
