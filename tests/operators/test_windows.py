"""Window edge cases against hand-computed expectations, on one and on two workers."""

from __future__ import annotations

from operator import attrgetter

import pytest

from operators.batches import END, TimedBatch
from operators.clock import Clock
from operators.windows import (
    Session,
    ShardMsg,
    Sliding,
    Tumbling,
    combine_panes,
    combine_sessions,
)
from operators.windows.session import SessionLogic
from tests.operators.windowing import Ev, as_rows, batches_for, run_windows

S = 1_000  # one second in ms
PAGES = Sliding(60 * S, 5 * S)
ERRORS = Sliding(60 * S, 20 * S)
MINUTE = Tumbling(60 * S)


def run(entry_point, events, window, delay, having=None, batch_sizes=(1,)):
    return run_windows(entry_point, [batches_for(events, batch_sizes)], window, delay, having)


def test_sliding_60_5_gives_12_windows_per_event(entry_point):
    counts, late = run(entry_point, [Ev("u", 62 * S)], PAGES, 60 * S)
    starts = sorted(c.start_ms for c in counts)
    assert starts == [s * S for s in range(5, 61, 5)]
    assert all(c.end_ms - c.start_ms == 60 * S and c.value == 1 for c in counts)
    assert late == []


def test_sliding_60_20_gives_3_windows_per_event(entry_point):
    counts, _ = run(entry_point, [Ev(404, 45 * S)], ERRORS, 60 * S)
    assert as_rows(counts) == {
        (404, 0, 60 * S, 1),
        (404, 20 * S, 80 * S, 1),
        (404, 40 * S, 100 * S, 1),
    }


def test_event_exactly_at_window_end_belongs_to_the_next_window(entry_point):
    counts, _ = run(entry_point, [Ev("u", 59_999), Ev("u", 60 * S)], MINUTE, 60 * S)
    assert as_rows(counts) == {("u", 0, 60 * S, 1), ("u", 60 * S, 120 * S, 1)}


def test_window_is_emitted_once_the_watermark_reaches_its_end():
    # watermark = 130 s - 60 s = 70 s >= end of [0, 60 s): emitted before end of input
    batches = batches_for([Ev("u", 10 * S), Ev("u", 130 * S)], [1])
    counts, _ = run_windows(_run_without_eof, [batches[:-1]], MINUTE, 60 * S)
    assert as_rows(counts) == {("u", 0, 60 * S, 1)}
    # ... but not when the watermark is one millisecond short
    batches = batches_for([Ev("u", 10 * S), Ev("u", 120 * S - 1)], [1])
    counts, _ = run_windows(_run_without_eof, [batches[:-1]], MINUTE, 60 * S)
    assert counts == []


def _run_without_eof(flow):
    from bytewax.testing import run_main

    run_main(flow)


def test_session_merges_at_exactly_the_gap(entry_point):
    counts, _ = run(
        entry_point,
        [Ev("a", 0), Ev("a", 30 * S), Ev("b", 0), Ev("b", 30 * S + 1)],
        Session(30 * S),
        30 * S,
    )
    assert as_rows(counts) == {
        ("a", 0, 60 * S, 2),
        ("b", 0, 30 * S, 1),
        ("b", 30 * S + 1, 60 * S + 1, 1),
    }


def test_session_end_is_last_event_plus_gap_and_late_event_bridges_two(entry_point):
    events = [Ev("a", 0), Ev("a", 50 * S), Ev("a", 25 * S)]  # 25 s joins both
    counts, late = run(entry_point, events, Session(30 * S), 30 * S)
    assert as_rows(counts) == {("a", 0, 80 * S, 3)}
    assert late == []


def test_out_of_order_within_the_delay_is_counted(entry_point):
    counts, late = run(entry_point, [Ev("u", 100 * S), Ev("u", 50 * S)], MINUTE, 60 * S)
    assert as_rows(counts) == {("u", 0, 60 * S, 1), ("u", 60 * S, 120 * S, 1)}
    assert late == []


def test_late_beyond_the_delay_goes_to_late_events_and_never_reopens(entry_point):
    events = [Ev("u", 10 * S), Ev("u", 200 * S), Ev("u", 20 * S)]
    counts, late = run(entry_point, events, MINUTE, 60 * S)
    # [0, 60 s) was emitted with one event; the late one does not re-emit it
    assert as_rows(counts) == {("u", 0, 60 * S, 1), ("u", 180 * S, 240 * S, 1)}
    assert [(e.key, e.event_time_ms, e.watermark_ms, e.windows_missed) for e in late] == [
        ("u", 20 * S, 140 * S, 1)
    ]
    assert late[0].event == Ev("u", 20 * S)


def test_sliding_event_late_for_some_windows_counts_in_the_others(entry_point):
    # watermark 90 s: of the 12 windows of 75 s, those ending at 80, 85, 90 s are closed
    counts, late = run(entry_point, [Ev("u", 100 * S), Ev("u", 75 * S)], PAGES, 10 * S)
    rows = as_rows(counts)
    assert {r for r in rows if r[1] < 45 * S} == {
        ("u", s * S, s * S + 60 * S, 1) for s in range(35, 45, 5)
    }
    assert ("u", 45 * S, 105 * S, 2) in rows
    assert [(e.windows_missed, e.windows_total) for e in late] == [(3, 12)]


def test_late_session_event(entry_point):
    events = [Ev("a", 100 * S), Ev("a", 10 * S)]  # wm 70 s >= 10 s + gap
    counts, late = run(entry_point, events, Session(30 * S), 30 * S)
    assert as_rows(counts) == {("a", 100 * S, 130 * S, 1)}
    assert [e.event_time_ms for e in late] == [10 * S]


def test_having_filters_final_counts_only(entry_point):
    six = [Ev(404, 41 * S + i) for i in range(6)]
    five = [Ev(500, 41 * S + i) for i in range(5)]
    counts, _ = run(entry_point, six + five, ERRORS, 60 * S, having=lambda n: n > 5)
    assert as_rows(counts) == {(404, s, s + 60 * S, 6) for s in (0, 20 * S, 40 * S)}


def test_null_key_is_its_own_group(entry_point):
    events = [Ev(None, 1 * S), Ev(None, 2 * S), Ev("x", 3 * S)]
    counts, _ = run(entry_point, events, MINUTE, 60 * S)
    assert as_rows(counts) == {(None, 0, 60 * S, 2), ("x", 0, 60 * S, 1)}
    counts, _ = run(entry_point, events, Session(30 * S), 30 * S)
    assert as_rows(counts) == {(None, 1 * S, 32 * S, 2), ("x", 3 * S, 33 * S, 1)}


def test_end_of_input_flushes_every_open_window(entry_point):
    counts, _ = run(entry_point, [Ev("u", 1 * S)], Session(30 * S), 30 * S)
    assert as_rows(counts) == {("u", 1 * S, 31 * S, 1)}


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_least_advanced_partition_holds_the_watermark(entry_point, batch):
    # p0 is read far ahead of p1 (a backfill); p1's in-order records must not be late.
    p0 = [Ev("u", t * S) for t in range(0, 600, 7)]
    p1 = [Ev("v", t * S) for t in range(0, 600, 11)]
    inputs = [batches_for(p0, [batch], "p0", 2), batches_for(p1, [batch], "p1", 2)]
    counts, late = run_windows(entry_point, inputs, MINUTE, 5 * S)
    assert late == []
    expected: dict[tuple, int] = {}
    for e in p0 + p1:
        k = (e.key, e.ts - e.ts % (60 * S))
        expected[k] = expected.get(k, 0) + 1
    assert as_rows(counts) == {(k, s, s + 60 * S, n) for (k, s), n in expected.items()}


def _msg(part, progress, idle=False, parts=2):
    return ShardMsg(part, parts, [], progress, idle)


def test_clock_waits_for_every_partition_and_skips_idle_ones():
    clock = Clock()
    clock.update(_msg("p0", 100))
    assert clock.low < 0  # p1 not heard from yet
    clock.update(_msg("p1", 50))
    assert clock.low == 50
    clock.update(_msg("p0", 300))
    assert clock.low == 50  # p1 holds it back
    clock.update(_msg("p1", 60, idle=True))
    assert clock.low == 300  # idle p1 no longer holds it back
    clock.update(_msg("p1", 70))
    assert clock.low == 300  # progress never goes back when p1 wakes up
    clock.update(_msg("p0", 400, idle=True))
    clock.update(_msg("p1", 500, idle=True))
    assert clock.low == 500  # all idle: the most advanced partition leads
    clock.update(_msg("p0", END))
    clock.update(_msg("p1", END))
    assert clock.low == END


def test_bad_windows_are_refused():
    with pytest.raises(ValueError):
        Sliding(60 * S, 61 * S)  # Spark refuses a slide longer than the window
    with pytest.raises(ValueError):
        Session(0)


def test_batch_helper_ends_with_end_of_input():
    batches = batches_for([Ev("u", 5)], [1])
    assert isinstance(batches[-1], TimedBatch) and batches[-1].at_end


def _batch(keys, times, marks=None):
    events = [Ev(k, t) for k, t in zip(keys, times, strict=True)]
    return TimedBatch("p0", 1, events, list(times), list(marks or times), max(times))


KEY = attrgetter("key")


def test_combine_panes_counts_per_key_and_pane_unless_an_event_is_late():
    batch = _batch(["a", "a", "b"], [1 * S, 4 * S, 6 * S])
    assert sorted(combine_panes(batch, KEY, None, PAGES, 60 * S) or []) == [
        ("a", 0, 2),
        ("b", 5 * S, 1),
    ]
    assert combine_panes(batch, KEY, lambda e: e.key == "b", PAGES, 60 * S) == [("b", 5 * S, 1)]
    # 10 s with its partition at 80 s: its first window [-45 s, 15 s) closed at 80 - 60 s
    late = _batch(["a", "a"], [80 * S, 10 * S], marks=[80 * S, 80 * S])
    assert combine_panes(late, KEY, None, PAGES, 60 * S) is None
    # ... but 20 s is still in time for all of its windows (the first ends at 25 s)
    in_time = _batch(["a", "a"], [80 * S, 20 * S], marks=[80 * S, 80 * S])
    assert combine_panes(in_time, KEY, None, PAGES, 60 * S) is not None


def test_combine_sessions_merges_runs_per_key_unless_order_matters():
    batch = _batch(["a", "a", "a", None], [0, 20 * S, 90 * S, 5 * S])
    assert set(combine_sessions(batch, KEY, None, 30 * S, 30 * S) or []) == {
        (None, 5 * S, 5 * S, 1),
        ("a", 0, 20 * S, 2),
        ("a", 90 * S, 90 * S, 1),
    }
    assert combine_sessions(batch, KEY, lambda e: e.key is None, 30 * S, 30 * S) == [
        (None, 5 * S, 5 * S, 1)
    ]
    # 10 s read when its partition is at 70 s: its own session [10 s, 40 s) closed at 40 s
    late = _batch(["a", "a"], [70 * S, 10 * S], marks=[70 * S, 70 * S])
    assert combine_sessions(late, KEY, None, 30 * S, 30 * S) is None
    # ... one millisecond later it is in time, and merged with its neighbours in any order
    in_time = _batch(["a", "a"], [70 * S, 10 * S + 1], marks=[70 * S, 70 * S])
    assert combine_sessions(in_time, KEY, None, 30 * S, 30 * S) == [
        ("a", 10 * S + 1, 10 * S + 1, 1),
        ("a", 70 * S, 70 * S, 1),
    ]


def test_partition_that_was_idle_is_judged_against_the_stream_watermark(entry_point):
    # p1 runs to 200 s while p0 is idle, so the stream's watermark passes 140 s. When p0
    # wakes with an event at 50 s, its own progress says "in time", but [0, 60 s) has
    # been emitted: the event is late, not silently added to a shortcut count.
    p1 = [TimedBatch("p1", 2, [Ev("v", 200 * S)], [200 * S], [200 * S], 200 * S)]
    p0 = [
        TimedBatch("p0", 2, [Ev("u", 10 * S)], [10 * S], [10 * S], 10 * S),
        TimedBatch("p0", 2, progress=11 * S, idle=True, was_idle=True),
    ]
    woke = TimedBatch("p0", 2, [Ev("u", 50 * S)], [50 * S], [50 * S], 50 * S, was_idle=True)
    end: list[TimedBatch[Ev]] = [TimedBatch(p, 2, progress=END) for p in ("p0", "p1")]
    flow_input = [(*p0, *p1, woke, *end)]
    counts, late = run_windows(entry_point, flow_input, MINUTE, 60 * S)
    assert as_rows(counts) == {("u", 0, 60 * S, 1), ("v", 180 * S, 240 * S, 1)}
    assert [(e.key, e.event_time_ms, e.watermark_ms) for e in late] == [("u", 50 * S, 140 * S)]


def _session_rows(messages: list[ShardMsg]) -> set[tuple]:
    """The rows of one session shard (gap 30 s, delay 30 s) fed these messages, one at a
    time, then the end of both partitions."""
    logic = SessionLogic(Session(30 * S), 30 * S, None, None)
    rows = []
    for msg in [*messages, _msg("p0", END), _msg("p1", END)]:
        out, _ = logic.on_batch([tuple(msg)])
        rows += [r for counts, _late in out for r in counts]
    return as_rows(rows)


def _read(part, key, t, mark):
    return ShardMsg(
        part, 2, [(key, t * S, mark * S, mark * S, Ev(key, t * S), None)], mark * S, False
    )


def test_a_session_does_not_depend_on_how_far_another_partition_has_got():
    # Chaos seed 4: p1 was written out of order (two writers, one held up). Its click at
    # 231 s is read after its progress jumped to 290 s: not late (231 + 30 > 290 - 30),
    # and 5 s after the session of the click at 226 s, so it belongs in it, whether p0
    # had moved the stream's watermark past that session's end (256 s) or not.
    p1 = [_read("p1", "u", 226, 226), _read("p1", "x", 290, 290)]
    joins = _read("p1", "u", 231, 290)
    want = {("u", 226 * S, 261 * S, 2), ("x", 290 * S, 320 * S, 1)}
    assert _session_rows([_msg("p0", 200 * S), *p1, joins, _msg("p0", 300 * S)]) == want
    assert _session_rows([_msg("p0", 200 * S), *p1, _msg("p0", 300 * S), joins]) == want
