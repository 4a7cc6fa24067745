"""Bringing in a CA made elsewhere (`spoolca import-openssl`, `import-easyrsa`): its
directory read and checked, every discrepancy reported, before anything is written
(source), then brought in whole (bringin)."""
