"""`PartitionProgress`: the replay's batch loop (`read`) is `advance` record by record."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sources.progress import PartitionProgress

records = st.lists(
    st.tuples(st.sampled_from([("a", 0), ("a", 1), ("b", 0), ("c", 7)]), st.integers(0, 50)),
    max_size=60,
)


@given(
    known=st.sets(st.sampled_from([("a", 0), ("a", 1), ("b", 0)])),
    batches=st.lists(records, max_size=4),
)
def test_read_is_advance_record_by_record(known, batches):
    one_by_one, batched = PartitionProgress(known), PartitionProgress(known)
    for batch in batches:
        marks, lows = [], []
        for tp, ts in batch:
            low = one_by_one.advance(tp, ts)
            mark = one_by_one.latest.get(tp, low)
            marks.append(mark if mark > low else low)
            lows.append(low)
        tps, times = [tp for tp, _ in batch], [ts for _, ts in batch]
        assert batched.read(tps, times) == (marks, lows)
        assert batched.snapshot() == one_by_one.snapshot()
        assert batched.low == one_by_one.low
