"""An OpenSSH certificate, made with the cryptography library's SSHCertificateBuilder."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.serialization import (
    SSHCertificate,
    SSHCertificateBuilder,
    SSHCertificateType,
    SSHCertPrivateKeyTypes,
)

from spoolca.ssh.policy import SSHDecision
from spoolca.ssh.request import SSHRequest

__all__ = ["sign_ssh_certificate"]


def sign_ssh_certificate(request: SSHRequest, decision: SSHDecision, cert_type: str,
                         ca_key: SSHCertPrivateKeyTypes, serial: int, since: dt.datetime,
                         ca_end: dt.datetime | None = None) -> SSHCertificate:
    """The certificate DECISION describes, valid from SINCE for its days (both ends
    count, as for X.509: one second less), never past CA_END."""
    start = int(since.timestamp())
    end = start + decision.validity_days * 86400 - 1
    if ca_end is not None:
        end = min(end, int(ca_end.timestamp()))
    builder = (SSHCertificateBuilder()
               .public_key(request.public_key)
               .serial(serial)
               .type(SSHCertificateType.USER if cert_type == "user"
                     else SSHCertificateType.HOST)
               .key_id(decision.key_id.encode())
               .valid_principals([p.encode() for p in decision.principals])
               .valid_after(start)
               .valid_before(end))
    for name, value in decision.critical_options:  # the library frames the value
        builder = builder.add_critical_option(name.encode(), value.encode())
    for name in decision.extensions:
        builder = builder.add_extension(name.encode(), b"")
    return builder.sign(ca_key)

