"""The short soak: the deployed process set (the Procfile's own lines, restarted when they
die) under a steady load and every fault kind once, loses, duplicates and strands nothing.

It starts its own servers and processes through bench.soak (not the suite's shared stack)
and takes a few minutes; `python -m bench.soak --minutes 10` is the full run.
"""

from __future__ import annotations

import os

from bench.soak import ROUND, run_soak
from tests.conftest import TEST_SETTINGS


def test_nothing_accepted_is_lost_under_every_fault_kind() -> None:
    # The processes run with the deployed settings, not the suite's short test timings.
    environ = {key: value for key, value in os.environ.items() if key not in TEST_SETTINGS}
    # 2.5 minutes: one round of every fault kind; the 30 s Redis outage stays 30 s, the long
    # one is 30 s too, the replica is out for 5 s.
    report = run_soak(minutes=2.5, clients=3, drain_minutes=3, environ=environ)
    shown = f"\n{report.details()}\n\n{report.table()}"

    assert {result.kind for result in report.faults} == set(ROUND), shown
    assert report.lost == 0, shown
    assert report.duplicated == 0, shown
    assert report.stuck == 0, shown
    assert report.manual_restarts == [], shown
    assert report.honcho is not None, shown
    assert report.honcho.ok, shown
