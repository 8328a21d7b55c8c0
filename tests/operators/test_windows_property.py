"""Property: the operators equal a plain batch reference on random events with random
arrival jitter, random batch sizes and shard counts, late events included."""

from __future__ import annotations

from functools import partial
from operator import attrgetter

from bytewax.testing import cluster_main, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.aggregates import Avg, Count, CountDistinct, Max, Min, Sum
from operators.windows import Session, Sliding, Tumbling
from tests.operators.windowing import Ev, as_rows, batches_for, run_windows
from tests.reference import session_reference, sliding_reference

S = 1_000
NO_VALUES = st.none()


@st.composite
def arrivals(draw, max_jitters: st.SearchStrategy[int], values=NO_VALUES):
    """Events whose arrival order is event time plus a random delay up to max_jitter."""
    max_jitter = draw(max_jitters)
    n = draw(st.integers(0, 60))
    keys = st.sampled_from(["a", "b", None, 7])
    events = []
    for _ in range(n):
        ts = draw(st.integers(0, 400 * S))
        # mostly small steps, sometimes exactly on a boundary
        if draw(st.booleans()):
            ts -= ts % (5 * S)
        jitter = draw(st.integers(0, max_jitter))
        events.append((ts + jitter, Ev(draw(keys), ts, draw(values))))
    events.sort(key=lambda x: x[0])
    return [e for _, e in events]


# Small batches go event by event; larger ones are mostly combined before routing.
batch_sizes = st.lists(st.integers(1, 7) | st.integers(8, 60), min_size=1, max_size=4)
having = st.sampled_from([None, 1, 2])  # keep counts > value


def _having(h):
    return None if h is None else (lambda n: n > h)


# WHERE before the window: on the key, or on the event time.
WHERES = {
    None: None,
    "not b": lambda key, ts: key != "b",
    "even seconds": lambda key, ts: ts // S % 2 == 0,
}
wheres = st.sampled_from(list(WHERES))


def _where(name):
    test = WHERES[name]
    return None if test is None else (lambda e: test(e.key, e.ts))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=arrivals(max_jitters=st.sampled_from([5 * S, 120 * S])),
    sizes=batch_sizes,
    window=st.sampled_from([(60, 5), (60, 20), (60, 60), (10, 5), (60, 25), (50, 20)]),
    delay=st.sampled_from([0, 10 * S, 60 * S]),
    h=having,
    shards=st.integers(1, 5),
    where=wheres,
)
def test_sliding_and_tumbling_match_reference(events, sizes, window, delay, h, shards, where):
    length, slide = window[0] * S, window[1] * S
    w = Tumbling(length) if length == slide else Sliding(length, slide)
    batches = [batches_for(events, sizes)]
    counts, late = run_windows(run_main, batches, w, delay, _having(h), shards, _where(where))
    rows, ref_late = sliding_reference(
        [(e.key, e.ts) for e in events], length, slide, delay, _having(h), WHERES[where]
    )
    assert as_rows(counts) == rows
    assert sorted(
        (e.key is None, str(e.key), e.event_time_ms, e.windows_missed) for e in late
    ) == sorted((k is None, str(k), t, m) for k, t, m in ref_late)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=arrivals(max_jitters=st.sampled_from([5 * S, 90 * S])),
    sizes=batch_sizes,
    gap=st.sampled_from([5 * S, 30 * S]),
    delay=st.sampled_from([0, 30 * S, 60 * S]),
    h=having,
    shards=st.integers(1, 5),
    where=wheres,
)
def test_sessions_match_reference(events, sizes, gap, delay, h, shards, where):
    batches = [batches_for(events, sizes)]
    counts, late = run_windows(
        run_main, batches, Session(gap), delay, _having(h), shards, _where(where)
    )
    rows, ref_late = session_reference(
        [(e.key, e.ts) for e in events], gap, delay, _having(h), WHERES[where]
    )
    assert as_rows(counts) == rows
    assert sorted((e.key is None, str(e.key), e.event_time_ms) for e in late) == sorted(
        (k is None, str(k), t) for k, t in ref_late
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=arrivals(max_jitters=st.sampled_from([0, 90 * S])),
    second=arrivals(max_jitters=st.sampled_from([0, 90 * S])),
    sizes=st.tuples(batch_sizes, batch_sizes),
    gap=st.sampled_from([5 * S, 30 * S]),
    delay=st.sampled_from([0, 30 * S]),
    shards=st.integers(1, 3),
)
def test_sessions_of_two_partitions_depend_on_event_time_only(
    first, second, sizes, gap, delay, shards
):
    """A partition read out of order by more than the delay, next to another: an event
    that is not late joins its session however far the other partition has got when it
    is read (chaos seed 4 split a session there), on one worker and on two."""
    inputs = [
        batches_for(first, sizes[0], "p0", 2),
        batches_for(second, sizes[1], "p1", 2),
    ]
    # each event is judged against its own partition's progress
    marks = [b.marks[i] for batches in inputs for b in batches for i in range(len(b.events))]
    events = [(e.key, e.ts) for e in [*first, *second]]
    rows, ref_late = session_reference(events, gap, delay, marks=marks)
    for entry_point in (
        run_main,
        partial(cluster_main, addresses=[], proc_id=0, worker_count_per_proc=2),
    ):
        counts, late = run_windows(entry_point, inputs, Session(gap), delay, None, shards)
        assert as_rows(counts) == rows
        assert sorted((str(e.key), e.event_time_ms) for e in late) == sorted(
            (str(k), t) for k, t in ref_late
        )


# Every aggregate at once; nulls among the values, as Spark skips them.
_v = attrgetter("value")
AGGREGATES = [Count(), Count(_v), Sum(_v), Min(_v), Max(_v), Avg(_v), CountDistinct(_v)]
values = st.none() | st.integers(-5, 20)


def expected_values(vs: list[int | None]) -> tuple:
    """What each of AGGREGATES gives for these values, by the book."""
    present = [v for v in vs if v is not None]
    return (
        len(vs),
        len(present),
        sum(present) if present else None,
        min(present) if present else None,
        max(present) if present else None,
        sum(present) / len(present) if present else None,
        len(set(present)),
    )


def _having_first(h):
    return None if h is None else (lambda v: v[0] > h)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=arrivals(max_jitters=st.sampled_from([5 * S, 120 * S]), values=values),
    sizes=batch_sizes,
    window=st.sampled_from([(60, 5), (60, 20), (60, 60), (10, 5), (60, 25), (50, 20)]),
    delay=st.sampled_from([0, 10 * S, 60 * S]),
    h=having,
    shards=st.integers(1, 5),
    where=wheres,
)
def test_aggregates_in_sliding_windows_match_reference(
    events, sizes, window, delay, h, shards, where
):
    length, slide = window[0] * S, window[1] * S
    w = Tumbling(length) if length == slide else Sliding(length, slide)
    batches = [batches_for(events, sizes)]
    got, late = run_windows(
        run_main, batches, w, delay, _having_first(h), shards, _where(where), AGGREGATES
    )
    rows, ref_late = sliding_reference(
        [(e.key, e.ts) for e in events],
        length,
        slide,
        delay,
        _having_first(h),
        WHERES[where],
        lambda members: expected_values([events[i].value for i in members]),
    )
    assert as_rows(got) == rows
    assert len(late) == len(ref_late)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=arrivals(max_jitters=st.sampled_from([5 * S, 90 * S]), values=values),
    sizes=batch_sizes,
    gap=st.sampled_from([5 * S, 30 * S]),
    delay=st.sampled_from([0, 30 * S, 60 * S]),
    h=having,
    shards=st.integers(1, 5),
    where=wheres,
)
def test_aggregates_in_sessions_match_reference(events, sizes, gap, delay, h, shards, where):
    batches = [batches_for(events, sizes)]
    got, late = run_windows(
        run_main, batches, Session(gap), delay, _having_first(h), shards, _where(where), AGGREGATES
    )
    rows, ref_late = session_reference(
        [(e.key, e.ts) for e in events],
        gap,
        delay,
        _having_first(h),
        WHERES[where],
        lambda members: expected_values([events[i].value for i in members]),
    )
    assert as_rows(got) == rows
    assert len(late) == len(ref_late)
