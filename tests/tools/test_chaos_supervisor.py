"""The chaos run's supervisor backs off as Kubernetes' CrashLoopBackOff does: a cluster
whose starts keep failing is not restarted every second (a crash loop into a broker
outage then eats the cores the rest of the run needs)."""

from __future__ import annotations

import itertools

from tools.chaos.supervisor import (
    BACKOFF_RESET_S,
    FIRST_BACKOFF_S,
    LONGEST_BACKOFF_S,
    next_backoff,
)


def test_failing_starts_double_the_wait_up_to_the_longest():
    waits, last = [], 0.0
    for _ in range(8):
        last = next_backoff(last, ran_s=0.5)
        waits.append(last)
    assert waits[0] == FIRST_BACKOFF_S
    assert all(b == min(2 * a, LONGEST_BACKOFF_S) for a, b in itertools.pairwise(waits))
    assert waits[-1] == LONGEST_BACKOFF_S


def test_a_start_that_ran_well_begins_the_back_off_again():
    assert next_backoff(LONGEST_BACKOFF_S, ran_s=BACKOFF_RESET_S) == FIRST_BACKOFF_S
    assert next_backoff(LONGEST_BACKOFF_S, ran_s=BACKOFF_RESET_S - 1) == LONGEST_BACKOFF_S
