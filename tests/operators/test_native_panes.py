"""`clickstream_native.count_panes` (Rust) against its Python reference, on random batches.

`combine_panes` counts a batch's events per key and pane in Rust; the reference is the
`Counter` it used before: the same rows, in the same order (the order each key and pane
was first seen), for keys a dict compares by `==` (1, 1.0 and True are one key), keys
whose hashes collide (CPython hashes -1 and -2 alike), None, strings and tuples, and
times on either side of zero and at the edges of 64 bits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import Any

import pytest
from clickstream_native import count_panes
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.batches import TimedBatch
from operators.windows import Sliding
from operators.windows.routing import combine_panes

NAN = float("nan")  # one object: equal to itself by identity only, as in a dict

KEYS = st.one_of(
    st.integers(-3, 3),  # -1 and -2 share a hash
    st.integers(),
    st.sampled_from([1.0, True, False, 0.0, -0.0, NAN, float("nan"), None, "", "a", (1, "a")]),
    st.text(max_size=3),
    st.tuples(st.integers(-2, 2), st.sampled_from(["x", None])),
)
TIMES = st.one_of(
    st.integers(-20_000, 20_000),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([2**62, -(2**62), 2**63 - 1, -(2**63)]),
)
SLIDES = st.one_of(st.integers(1, 30_000), st.sampled_from([1, 5_000, 2**62]))


def reference(keys: list[Hashable], times: list[int], slide: int) -> list[tuple]:
    counted = Counter(zip(keys, [t - t % slide for t in times], strict=True))
    return [(k, p, n) for (k, p), n in counted.items()]


def same(rows: list[tuple], expected: list[tuple]) -> bool:
    """Equal rows, each key the very object the reference kept (NaN is not == NaN)."""
    return len(rows) == len(expected) and all(
        r[0] is e[0] and r[1:] == e[1:] and type(r[1]) is int and type(r[2]) is int
        for r, e in zip(rows, expected, strict=True)
    )


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(KEYS, TIMES), max_size=60), SLIDES)
def test_count_panes_is_the_counter_it_replaced(events: list[tuple[Any, int]], slide: int):
    keys = [k for k, _ in events]
    times = [t for _, t in events]
    expected = reference(keys, times, slide)
    rows = count_panes(keys, times, slide)
    if all(t - t % slide >= -(2**63) for t in times):
        assert rows is not None, "every pane fits 64 bits: counted in Rust"
        assert same(rows, expected), (rows, expected)
    else:  # a pane below -2**63: Python counts
        assert rows is None


def test_count_panes_leaves_what_it_cannot_count_to_python():
    assert count_panes([1], [2**63], 5) is None  # a time beyond 64 bits
    assert count_panes([1], [1.5], 5) is None  # a time that is not an int
    assert count_panes([1], [7], 0) is None  # no slide
    assert count_panes([1, 2], [7], 5) is None  # columns of two lengths
    assert count_panes((1,), [7], 5) is None  # not a list
    assert count_panes([], [], 5) == []


class _Refuses:
    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparing")


def test_an_error_comparing_keys_is_raised_as_the_counter_raises_it():
    a, b = _Refuses(), _Refuses()
    with pytest.raises(RuntimeError, match="no comparing"):
        reference([a, b], [0, 0], 5)
    with pytest.raises(RuntimeError, match="no comparing"):
        count_panes([a, b], [0, 0], 5)


EVENTS = st.tuples(st.integers(0, 9), st.integers(0, 200_000), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENTS, min_size=1, max_size=80), st.booleans())
def test_combine_panes_counts_as_before(events: list[tuple[int, int, bool]], filtered: bool):
    # events (key, time, kept by `where`), all in time for their windows
    batch = TimedBatch("p0", 1, events, [t for _, t, _ in events], [0] * len(events), 0)
    where = (lambda e: e[2]) if filtered else None
    rows = combine_panes(batch, lambda e: e[0], where, Sliding(60_000, 5_000), 60_000)
    kept = [e for e in events if where is None or where(e)]
    assert rows == reference([k for k, _, _ in kept], [t for _, t, _ in kept], 5_000)
