"""Pre-issuance linting with pkilint's RFC 5280 validators.

Findings of severity WARNING or worse become spoolca findings (`lint.warning`,
`lint.error`, `lint.fatal`) with pkilint's own code in the message; a validator that
crashes is a fatal finding, never a silent pass.
"""

from __future__ import annotations

from spoolca.findings import Finding

__all__ = ["CertificateLinter"]

# pkilint's severities (ValidationFindingSeverity): FATAL 0, ERROR 1, WARNING 2.
_CODES = {0: "lint.fatal", 1: "lint.error", 2: "lint.warning"}


class CertificateLinter:
    """The PKIX certificate validator of `lint_pkix_cert`, built once and reused."""

    def __init__(self) -> None:
        # Imported here: pkilint takes 0.1 s to import, wasted when lint = "off".
        from pkilint import loader
        from pkilint.pkix import certificate, name
        from pkilint.pkix import extension as pkix_extension

        self._validator = certificate.create_pkix_certificate_validator_container(
            certificate.create_decoding_validators(
                name.ATTRIBUTE_TYPE_MAPPINGS, pkix_extension.EXTENSION_MAPPINGS
            ),
            [
                certificate.create_issuer_validator_container([]),
                certificate.create_validity_validator_container(),
                certificate.create_subject_validator_container([]),
                certificate.create_extensions_validator_container([]),
                certificate.create_spki_validator_container([]),
            ],
        )
        self._loader = loader.RFC5280CertificateDocumentLoader()

    def lint(self, der: bytes) -> list[Finding]:
        """Every WARNING-or-worse finding pkilint raises on a DER certificate."""
        try:
            document = self._loader.load_der_document(der, "certificate")
            results = self._validator.validate(document.root)
        except Exception as exc:  # a crashing linter must fail closed, whatever it raised
            return [Finding("lint.fatal", f"pkilint failed on the certificate: {exc}")]
        findings = []
        for result in results:
            for description in result.finding_descriptions:
                code = _CODES.get(int(description.finding.severity))
                if code:
                    detail = f": {description.message}" if description.message else ""
                    findings.append(Finding(code, f"pkilint {description.finding.code} at "
                                            f"{result.node.path}{detail}"))
        return findings
