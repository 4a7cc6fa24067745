"""The result files are built without the standard library's slow paths: they must still
be byte for byte what json.dumps and cryptography write, or a re-publication would differ
from the first one and a reader that compares them would see a change."""

from __future__ import annotations

import datetime as dt
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from spoolca.notation.der import pem
from spoolca.spool.results import result_json
from tests.pki import make_key, subject

# Any text UTF-8 can hold (a lone surrogate cannot, and no register value is one).
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)))
_SCALARS = st.none() | st.booleans() | st.integers() | _TEXT | st.floats(allow_nan=False)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(_TEXT, inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None, database=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=8))
def test_result_json_is_what_json_dumps_writes(fields: dict[str, object]) -> None:
    expected = {k: v for k, v in fields.items() if v is not None}
    text = json.dumps(expected, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert result_json(**fields) == text.encode()


def test_a_value_that_is_not_json_is_refused_as_json_dumps_refuses_it() -> None:
    try:
        result_json(status=object())
    except TypeError:
        return
    raise AssertionError("an object that JSON cannot hold was written")


def test_pem_is_cryptographys_for_every_length() -> None:
    key = make_key("ec-p256")
    now = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    for names in range(1, 40):  # DER lengths at every remainder of a 48-byte line
        sans = x509.SubjectAlternativeName([x509.DNSName(f"h{i}.sample.com")
                                            for i in range(names)])
        cert = (x509.CertificateBuilder().subject_name(subject()).issuer_name(subject())
                .public_key(key.public_key()).serial_number(names)
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(sans, critical=False).sign(key, hashes.SHA256()))
        armoured = pem("CERTIFICATE", cert.public_bytes(Encoding.DER))
        assert armoured == cert.public_bytes(Encoding.PEM)
