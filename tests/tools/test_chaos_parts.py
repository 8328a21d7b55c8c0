"""Parts of the chaos run that need no run: the supervisor's back-off and the checker's
look at the timeline (the whole run is `test_chaos.py`)."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

from tools.chaos.checker import (
    STALL_S,
    Record,
    Verdict,
    check_join_kept_up,
    compare,
    once_per_origin,
)
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


def _timeline(path: Path, joined_until_s: float, produced_until_s: float) -> Path:
    """Samples every 2 s for 10 minutes: clicks produced until `produced_until_s`,
    USER_CLICKSTREAM growing until `joined_until_s`."""
    with path.open("w") as out:
        for i in range(300):
            t = 2.0 * i
            produced = int(min(t, produced_until_s) * 100)
            joined = int(min(t, joined_until_s) * 90)
            out.write(json.dumps({"t": t, "produced": produced, "joined": joined}) + "\n")
    return path


def _faults(path: Path, *spans: tuple[float, float]) -> Path:
    path.write_text("".join(json.dumps({"start_s": a, "end_s": b}) + "\n" for a, b in spans))
    return path


def test_the_checker_names_a_join_that_held_every_click_back(tmp_path):
    verdict = Verdict()
    faults = _faults(tmp_path / "faults.jsonl", (150, 200), (180, 250))
    check_join_kept_up(verdict, _timeline(tmp_path / "stalled.jsonl", 100, 600), faults)
    # 100 s to 598 s, less the 100 s of faults
    assert verdict.failures == [
        f"USER_CLICKSTREAM: enrich wrote nothing for {598 - 100 - 100} s without a fault "
        "in force while clicks came"
    ]
    assert STALL_S < 598 - 100 - 100


def test_a_stall_while_faults_are_in_force_is_not_the_join(tmp_path):
    verdict = Verdict()
    faults = _faults(tmp_path / "faults.jsonl", (110, 300), (290, 400))
    # stalled from 100 s to 420 s: 10 s and 20 s of it free of faults
    check_join_kept_up(verdict, _timeline(tmp_path / "t.jsonl", 100, 420), faults)
    assert verdict.failures == []


def test_a_join_that_kept_up_or_a_quiet_end_is_no_stall(tmp_path):
    verdict = Verdict()
    none = tmp_path / "no-faults.jsonl"
    check_join_kept_up(verdict, _timeline(tmp_path / "kept_up.jsonl", 600, 600), none)
    # the producer stopped at 300 s; USER_CLICKSTREAM stops growing with it
    check_join_kept_up(verdict, _timeline(tmp_path / "quiet_end.jsonl", 300, 300), none)
    assert verdict.failures == []


def test_two_clicks_alike_are_not_a_duplicate_but_a_third_copy_is():
    """Seed 2 produced two clicks of one user alike to the millisecond; the checker took
    them for one written twice (and one missing)."""
    click = ("2", 1796615037789, "111.249.79.93", "GET /x HTTP/1.1", 404, 4096, "O", "F")
    other = ("3", 1796615037790, "1.2.3.4", "GET /y HTTP/1.1", 200, 1, "P", "G")
    verdict = Verdict()
    compare(verdict, "T", Counter([click, click, other]), [click, other, click], alike=True)
    assert verdict.failures == []
    compare(verdict, "T", Counter([click, click, other]), [click, click, click, other], alike=True)
    assert verdict.failures == ["T: 1 rows written twice, e.g. " + repr(click)]
    assert verdict.duplicates == 1


def test_a_table_row_twice_is_a_duplicate():
    row = ("u", 0, 60_000, 3)
    verdict = Verdict()
    compare(verdict, "pages_per_min", Counter([row]), [row, row])
    assert verdict.failures == ["pages_per_min: 1 rows written twice, e.g. " + repr(row)]


def test_a_click_written_twice_is_named_by_its_origin_and_writers():
    """Two alike clicks are fine by content; by origin, a click written twice is caught
    even when the topic also holds a click alike to it, and the failure says who wrote
    each copy."""

    def rec(offset: int, origin: str, token: str) -> Record:
        headers = {"origin": origin, "lease-token": token}
        return Record(0, offset, 1_000, b"2", {"USERNAME": "u"}, False, headers)

    verdict = Verdict()
    kept = once_per_origin(verdict, [rec(0, "c/0/7", "3"), rec(1, "c/0/8", "3")])
    assert [r.offset for r in kept] == [0, 1] and verdict.failures == []
    kept = once_per_origin(
        verdict, [rec(0, "c/0/7", "3"), rec(1, "c/0/8", "3"), rec(5, "c/0/7", "4")]
    )
    assert [r.offset for r in kept] == [0, 1]
    assert verdict.failures == [
        "USER_CLICKSTREAM: 1 clicks written twice, e.g. c/0/7 at 0/0 by lease token 3, "
        "0/5 by lease token 4"
    ]
    assert verdict.duplicates == 1
