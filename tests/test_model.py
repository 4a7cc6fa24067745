"""Features compose (invariant 17): random sequences of real operations on a real CA,
every promise checked after every step (tests/model.py says which). Bounded here; the
long campaign is bench/model_campaign.py."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from spoolca.log import configure_logging
from tests.model import CAMachine
from tests.pki import CREATED

SHARDS = 5  # run side by side by pytest-xdist: the model is the suite's longest test


@pytest.mark.parametrize("shard", range(SHARDS))
def test_features_compose(_ca_template: Path, shard: int):
    """25 sequences (5 per shard, each shard its own random sequences) of up to 30
    steps: submit (good, bad, again), pass, kill -9 of a pass or the daemon, revoke,
    lift a hold, CRL, clock wrong and fixed, backup, restore with and without catch-up,
    stick export, audit export and verify."""
    # SPOOLCA_MODEL_SHRINK=0: report a failing sequence as found (shrinking one of 30
    # steps of real commands can take longer than the search that found it).
    phases = [Phase.generate] if os.environ.get("SPOOLCA_MODEL_SHRINK") == "0" else list(Phase)
    CAMachine.template = _ca_template
    CAMachine.created = CREATED
    configure_logging(io.StringIO())  # thousands of outcome lines: not the test's output
    try:
        run_state_machine_as_test(CAMachine, settings=settings(
            max_examples=-(-int(os.environ.get("SPOOLCA_MODEL_SEQUENCES", "25")) // SHARDS),
            stateful_step_count=int(os.environ.get("SPOOLCA_MODEL_STEPS", "30")),
            deadline=None, database=None, phases=phases,
            suppress_health_check=list(HealthCheck)))
    finally:
        configure_logging(None)
