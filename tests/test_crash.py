"""Crash consistency at the block level (invariant 14): a sample of the power cuts a
recorded workload can meet, each mounted and checked (tests/crash.py says what). A
process kill is not a power cut: only the writes that reached the device survive here."""

from __future__ import annotations

import os

import pytest

from tests.crash import campaign

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mounts need root"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                       reason="the recording device is served over FUSE: no /dev/fuse here"),
]


def test_power_cuts_lose_nothing_durable_and_publish_nothing_that_is_not():
    """40 crash states of init, a pass, the daemon and a revocation (some with unflushed
    writes lost): each holds every promise after recovery."""
    checked, entries, problems = campaign(int(os.environ.get("SPOOLCA_CRASH_STATES", "40")))
    assert checked >= 20 and entries > checked, (checked, entries)
    assert problems == [], "\n".join(problems[:20])
