"""Aggregates over a window's events, each a mergeable partial state.

An `Aggregate` turns a group of events into a partial state (`of`), merges two
partial states (`merge`) and reads the final value from one (`result`). Because
every state merges, the window operator can combine a batch before routing it
(map-side), add panes into sliding windows, merge runs into sessions, and never
keep an event. Nulls follow Spark: aggregates skip them; `count(col)` counts the
non-null values; `sum`, `avg`, `min`, `max` and the variances of nothing but nulls are
null.

```python
from operator import attrgetter

from operators.aggregates import Avg, Count, CountDistinct, Sum

aggs = Aggregates([Count(), Sum(attrgetter("bytes")), CountDistinct(attrgetter("ip"))])
p = aggs.of(clicks[:10]) + aggs.of(clicks[10:])   # partial states merge with +
aggs.results(p)                                   # (20, 81_230, 7)
```

A new aggregate is one new subclass of `Aggregate`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from operators.describe import describe

if TYPE_CHECKING:
    from datasketches import hll_sketch

Column = Callable[[Any], Any]


class Aggregate:
    """One aggregate over `column` of the events (over the events themselves for
    `count(*)`). States are never changed in place: `merge` returns a new one, so a
    pane's state can be shared by every window that holds it."""

    name: ClassVar[str]

    def __init__(self, column: Column | None = None, text: str = "") -> None:
        self.column = column
        # What it computes, for a recovery store's definition: `sum(bytes)` from SQL,
        # `sum(attrgetter('bytes'))` or the lambda's code from Python (never an address)
        self.text = text or f"{self.name}({'*' if column is None else describe(column)})"

    def of(self, values: list[Any]) -> Any:
        """The partial state of a non-empty group of values (None among them is null)."""
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def result(self, state: Any) -> Any:
        return state

    def save(self, state: Any) -> Any:
        """The state as plain, picklable data for a snapshot."""
        return state

    def load(self, saved: Any) -> Any:
        return saved

    def __repr__(self) -> str:
        return self.text


def _present(values: list[Any]) -> list[Any]:
    return [v for v in values if v is not None]


def _either(a: Any, b: Any, both: Callable[[Any, Any], Any]) -> Any:
    """Merge two states that are None when only nulls were seen."""
    if a is None:
        return b
    if b is None:
        return a
    return both(a, b)


class Count(Aggregate):
    """`count(*)` without a column, else `count(col)`: the non-null values."""

    name = "count"

    def of(self, values: list[Any]) -> int:
        if self.column is None:
            return len(values)
        return len(values) - values.count(None)

    def merge(self, a: int, b: int) -> int:
        return a + b


class Sum(Aggregate):
    name = "sum"

    def of(self, values: list[Any]) -> Any:
        present = _present(values)
        return sum(present) if present else None

    def merge(self, a: Any, b: Any) -> Any:
        return _either(a, b, lambda x, y: x + y)


class Min(Aggregate):
    name = "min"

    def of(self, values: list[Any]) -> Any:
        present = _present(values)
        return min(present) if present else None

    def merge(self, a: Any, b: Any) -> Any:
        return _either(a, b, min)


class Max(Aggregate):
    name = "max"

    def of(self, values: list[Any]) -> Any:
        present = _present(values)
        return max(present) if present else None

    def merge(self, a: Any, b: Any) -> Any:
        return _either(a, b, max)


class Avg(Aggregate):
    """The mean, as a float; its state is (sum, count) of the non-null values."""

    name = "avg"

    def of(self, values: list[Any]) -> tuple[Any, int]:
        present = _present(values)
        return (sum(present), len(present))

    def merge(self, a: tuple[Any, int], b: tuple[Any, int]) -> tuple[Any, int]:
        return (a[0] + b[0], a[1] + b[1])

    def result(self, state: tuple[Any, int]) -> float | None:
        return state[0] / state[1] if state[1] else None


class CountDistinct(Aggregate):
    """`count(DISTINCT col)`, exact: the state is the set of distinct non-null values,
    so it holds as many values as a window has distinct ones."""

    name = "count_distinct"

    def of(self, values: list[Any]) -> frozenset:
        present = frozenset(values)
        return present - {None} if None in present else present

    def merge(self, a: frozenset, b: frozenset) -> frozenset:
        return a | b

    def result(self, state: frozenset) -> int:
        return len(state)


class CountIf(Aggregate):
    """`count_if(condition)`: the events for which the condition is true (not false, not
    null); `column` is the condition."""

    name = "count_if"

    def of(self, values: list[Any]) -> int:
        return sum(1 for v in values if v is True)

    def merge(self, a: int, b: int) -> int:
        return a + b


class MaxBy(Aggregate):
    """`max_by(x, ord)`: the `x` of the event with the greatest `ord` (`column` gives
    `(ord, x)`); events whose `ord` is null are skipped, as in Spark. Among events of the
    same `ord` Spark returns whichever it met first, which depends on how the stream was
    split; here it is the greatest `x` (a null the least), so a table does not depend on
    batches, workers or restarts. The state is the chosen `(ord, x)`, or None."""

    name = "max_by"
    # which of two candidates wins: the greater (max_by) or the lesser (min_by)
    pick: ClassVar[Callable[..., Any]] = max

    @staticmethod
    def _order(pair: tuple[Any, Any]) -> tuple:
        return (pair[0], pair[1] is not None, pair[1])

    def of(self, values: list[tuple[Any, Any]]) -> tuple[Any, Any] | None:
        present = [v for v in values if v[0] is not None]
        return type(self).pick(present, key=self._order) if present else None

    def merge(self, a: Any, b: Any) -> Any:
        return _either(a, b, lambda x, y: type(self).pick(x, y, key=self._order))

    def result(self, state: tuple[Any, Any] | None) -> Any:
        return None if state is None else state[1]


class MinBy(MaxBy):
    """`min_by(x, ord)`: the `x` of the event with the least `ord`; among ties, the least
    `x` (see `MaxBy`)."""

    name = "min_by"
    pick = min


class Variance(Aggregate):
    """`var_samp` (`variance`), `var_pop`, and with `root` `stddev_samp` (`stddev`) and
    `stddev_pop`, as doubles. The state is (n, mean, M2) of the non-null values, updated
    value by value and merged with Chan et al.'s formula, as Spark's `CentralMomentAgg`
    does, so shards, panes and sessions merge exactly. Like Spark (without its legacy
    flag), the sample forms of one value are null, and every form of none."""

    name = "variance"

    def __init__(
        self,
        column: Column | None = None,
        text: str = "",
        population: bool = False,
        root: bool = False,
    ) -> None:
        super().__init__(column, text)
        self.population = population
        self.root = root

    def of(self, values: list[Any]) -> tuple[float, float, float]:
        n = mean = m2 = 0.0
        for v in values:
            if v is None:
                continue
            n += 1.0
            delta = v - mean
            delta_n = delta / n
            mean += delta_n
            m2 += delta * (delta - delta_n)
        return (n, mean, m2)

    def merge(
        self, a: tuple[float, float, float], b: tuple[float, float, float]
    ) -> tuple[float, float, float]:
        n_a, mean_a, m2_a = a
        n_b, mean_b, m2_b = b
        n = n_a + n_b
        if n == 0:
            return a
        delta = mean_b - mean_a
        delta_n = delta / n
        return (n, mean_a + delta_n * n_b, m2_a + m2_b + delta * delta_n * n_a * n_b)

    def result(self, state: tuple[float, float, float]) -> float | None:
        n, _, m2 = state
        divisor = n if self.population else n - 1.0
        if n == 0 or divisor == 0:
            return None
        value = m2 / divisor
        return math.sqrt(value) if self.root else value


@cache
def _sketches() -> ModuleType:
    """Apache DataSketches, imported on first use: with numpy it costs 0.2 s of every
    start, so only a table with `approx_count_distinct` pays it (tests/test_startup.py)."""
    import datasketches

    return datasketches


class ApproxCountDistinct(Aggregate):
    """`approx_count_distinct(col)`: an HLL sketch (Apache DataSketches) of `2^lg_k`
    buckets. lg_k 12 (the default) has a relative standard error of 1.6% (3 sigma: 4.9%),
    better than Spark's default `rsd` of 5%, in at most 2.5 KiB per window and key;
    small counts are exact (the sketch keeps a list until it fills)."""

    name = "approx_count_distinct"

    def __init__(self, column: Column | None = None, text: str = "", lg_k: int = 12) -> None:
        super().__init__(column, text)
        self.lg_k = lg_k

    def of(self, values: list[Any]) -> hll_sketch | None:
        present = _present(values)
        if not present:
            return None
        ds = _sketches()
        sketch = ds.hll_sketch(self.lg_k, ds.tgt_hll_type.HLL_4)
        for v in present:
            # one spelling per value, so 3, 3.0 and "3" are distinct as in Spark's hashing
            sketch.update(v if isinstance(v, str | int | float) else repr(v))
        return sketch

    def merge(self, a: hll_sketch | None, b: hll_sketch | None) -> hll_sketch | None:
        ds = _sketches()

        def union(x: hll_sketch, y: hll_sketch) -> hll_sketch:
            u = ds.hll_union(self.lg_k)
            u.update(x)
            u.update(y)
            return u.get_result(ds.tgt_hll_type.HLL_4)

        return _either(a, b, union)

    def result(self, state: hll_sketch | None) -> int:
        if state is None:
            return 0
        # A sketch's own estimate depends on how it was built: one fed value by value
        # uses its running (HIP) estimate, one made by a union estimates from its
        # registers. Which one a window gets depends on how batches were combined, so on
        # speed and worker count. A union of the sketch with itself keeps the registers
        # (max of equal values) and always estimates from them: one answer per input.
        union = _sketches().hll_union(self.lg_k)
        union.update(state)
        union.update(state)
        return round(union.get_estimate())

    # Sketches do not pickle: snapshots hold their compact bytes.
    def save(self, state: hll_sketch | None) -> bytes | None:
        return None if state is None else state.serialize_compact()

    def load(self, saved: bytes | None) -> hll_sketch | None:
        return None if saved is None else _sketches().hll_sketch.deserialize(saved)


class Percentile(Aggregate):
    """`percentile_approx(col, p[, accuracy])`, computed exactly: the smallest value with
    at least `p` of the non-null values at or below it, as Spark defines it (Spark's
    answer is exact up to `accuracy` values, 10,000 by default, and within 1/accuracy of
    the rank beyond). The state is each distinct value with its count, so it grows with
    the distinct values of a window, as `count(DISTINCT)`'s does; a mergeable sketch
    (KLL) would be smaller, but its compactions are random, and a resumed or rescaled run
    must give the same rows."""

    name = "percentile"

    def __init__(self, column: Column | None = None, text: str = "", p: float = 0.5) -> None:
        super().__init__(column, text)
        self.p = p

    def of(self, values: list[Any]) -> Counter:
        return Counter(_present(values))

    def merge(self, a: Counter, b: Counter) -> Counter:
        return a + b  # a new Counter: states are never changed in place

    def result(self, state: Counter) -> Any:
        if not state:
            return None
        # Spark: the value at rank ceil(p * n), counting from 1 (the least for p = 0)
        rank = max(math.ceil(self.p * sum(state.values())), 1)
        seen = 0
        for v in sorted(state):
            seen += state[v]
            if seen >= rank:
                return v
        return None


class Partial:
    """The partial states of a table's aggregates for some events; `+` merges two and
    `0 + p` is `p`, so window state adds them as it adds counts."""

    __slots__ = ("aggs", "states")

    def __init__(self, aggs: Aggregates, states: tuple) -> None:
        self.aggs = aggs
        self.states = states

    def __add__(self, other: Partial) -> Partial:
        merges = self.aggs.merges
        return Partial(
            self.aggs,
            tuple(m(a, b) for m, a, b in zip(merges, self.states, other.states, strict=True)),
        )

    def __radd__(self, other: int) -> Partial:
        return self  # 0 + p: states are never changed in place, so sharing is safe

    def __repr__(self) -> str:
        return f"Partial{self.aggs.results(self)}"


class Aggregates:
    """A table's aggregates, in SELECT order: the partial state of a group of events
    (`of`), the final values (`results`), and plain forms (`save`, `load`) for what
    leaves the process: snapshots, and combined rows sent to a shard in another
    process (a `Partial` holds its aggregates' functions, which do not pickle)."""

    def __init__(self, aggregates: Sequence[Aggregate]) -> None:
        if not aggregates:
            raise ValueError("at least one aggregate")
        self.aggregates = tuple(aggregates)
        self.merges = tuple(a.merge for a in self.aggregates)
        self._columns = [(a.of, a.column) for a in self.aggregates]

    def of(self, events: list[Any]) -> Partial:
        states = tuple(
            of(events if col is None else list(map(col, events))) for of, col in self._columns
        )
        return Partial(self, states)

    def results(self, partial: Partial) -> tuple:
        return tuple(a.result(s) for a, s in zip(self.aggregates, partial.states, strict=True))

    def save(self, partial: Partial) -> tuple:
        return tuple(a.save(s) for a, s in zip(self.aggregates, partial.states, strict=True))

    def load(self, saved: tuple) -> Partial:
        return Partial(self, tuple(a.load(s) for a, s in zip(self.aggregates, saved, strict=True)))

    def is_count(self) -> bool:
        """Only `count(*)`: the window operator then keeps plain ints (its fast path)."""
        return (
            len(self.aggregates) == 1
            and type(self.aggregates[0]) is Count
            and (self.aggregates[0].column is None)
        )

    def __repr__(self) -> str:
        return ", ".join(a.text for a in self.aggregates)
