"""The daemon's refusals and the findings' severities: values whose rules the daemon and
the results rely on (the live behaviour is in test_daemon.py and test_process.py)."""

from __future__ import annotations

import pytest

from spoolca.errors import InternalError
from spoolca.findings import Finding, Severity
from spoolca.service.refusals import Refusal, Refusals
from spoolca.x509.policy import Decision


def test_status_shows_the_refusal_to_fix_first_and_each_is_news_once():
    refusals = Refusals()
    assert not refusals and refusals.shown() == ""
    assert refusals.hold(Refusal.SEAL, "the audit key does not sign")
    assert refusals.hold(Refusal.CLOCK, "the clock reads 2031")
    assert not refusals.hold(Refusal.CLOCK, "the clock reads 2031")  # logged once
    assert refusals.shown() == "the clock reads 2031"  # the clock before the seal
    refusals.hold(Refusal.REGISTER, "the register is behind")
    assert refusals.shown() == "the register is behind"
    assert refusals.lift(Refusal.REGISTER) == "the register is behind"
    assert refusals.lift(Refusal.KEY) == ""  # lifting what did not hold says so
    assert Refusal.CLOCK in refusals and Refusal.REGISTER not in refusals


def test_a_note_is_never_a_reason_and_a_reason_never_a_note():
    note = Finding("note.dn_field_dropped", "a field was dropped")
    reason = Finding("policy.dn.empty", "the subject is empty")
    assert (note.severity, reason.severity) == (Severity.NOTE, Severity.REFUSAL)
    assert Decision((reason,), notes=(note,)).accepted is False
    assert Decision((), notes=(note,)).accepted
    with pytest.raises(InternalError, match=r"note\.dn_field_dropped"):
        Decision((note,))  # it would refuse a request for an informational note
    with pytest.raises(InternalError, match=r"policy\.dn\.empty"):
        Decision((), notes=(reason,))


def test_a_refused_request_has_a_reason():
    """The pipeline's Refused value (in place of a list of findings beside a Plan): every
    reason kept, and never a refusal without one."""
    from spoolca.process.items import Refused

    reason = Finding("policy.dn.empty", "the subject is empty")
    assert Refused.because(reason).reasons == [reason]
    with pytest.raises(InternalError, match="without a reason"):
        Refused(())
