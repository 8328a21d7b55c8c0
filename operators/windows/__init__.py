"""Event-time window counts with Spark Structured Streaming's semantics.

`count_window` counts events per key in sliding, tumbling or session windows and
emits each window exactly once, when the stream's watermark passes its end:

- Sliding and tumbling windows are aligned to the Unix epoch and half open,
  `[start, start + length)`; an event belongs to `length / slide` windows.
- A session starts at its first event and ends at its last event + `gap`; an event
  joins a session when it is at most `gap` away (inclusive), and may bridge two.
- The watermark of the stream is the least progress over its input partitions
  (see `TimedBatch`) minus `delay`. An event is judged against the watermark of
  its own partition at the moment it was read (or the stream's, if that is
  ahead because idle partitions were skipped): windows that end at or before it
  are closed for that event, exactly as Spark drops late rows per window. Such an
  event is reported on the `late` stream with the reason; it never re-opens or
  re-emits a window.
- `where` picks the events to count, like SQL `WHERE`; the others still move
  event time on. `having` filters final counts only, like SQL `HAVING`.
- `None` is an ordinary key: events without a key form their own group.

Because lateness is judged against the partition's own progress, the output
depends on event time only: the same input gives the same windows at any speed,
batch size or worker count. The one wall-clock influence is the idle timeout of
the sources, which lets a quiet stream's watermark move on.

State is held per shard, not per key: events are routed to a fixed number of
shards by a stable hash of their key, and each shard keeps plain dicts of counts
per pane (one slide of time) and key. Cost grows with events and output rows,
not with the number of keys, and a restart may use another worker count.

Batches are combined before they are routed, as a map-side combiner does: counts
per (key, pane), or per-key runs of events closer than the gap for sessions, so
a shard receives a few rows per batch instead of every event. That is only done
when no event of the batch can be late or join a window closed during the batch
(checked per event against its own partition's progress, and never for a
partition that `was_idle`, which may be behind the stream). Otherwise every event
goes to its shard and is judged one by one. Both paths give the same windows.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from operator import attrgetter, itemgetter
from types import CodeType
from typing import Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from operators.batches import TimedBatch
from operators.shards import DEFAULT_SHARDS, LiveShards, ShardCache, shard_of
from operators.windows.routing import Combine, ShardMsg, Splitter, combine_panes, combine_sessions
from operators.windows.session import SessionLogic
from operators.windows.sliding import SlidingLogic
from operators.windows.specs import LateEvent, Session, Sliding, Tumbling, Window, WindowCount
from operators.windows.state import ShardLogic
from operators.windows.stats import WindowStats

__all__ = [
    "DEFAULT_SHARDS",
    "LateEvent",
    "LiveShards",
    "Session",
    "ShardCache",
    "ShardMsg",
    "Sliding",
    "Tumbling",
    "Window",
    "WindowCount",
    "WindowOut",
    "WindowStats",
    "combine_panes",
    "combine_sessions",
    "count_window",
    "describe",
    "shard_of",
]

E = TypeVar("E")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class WindowOut(Generic[E]):
    """Streams out of `count_window`, batched per shard activation for throughput, and
    `stats` on its state."""

    counts: Stream[list[WindowCount]]
    late: Stream[list[LateEvent[E]]]
    stats: WindowStats
    # What the counts mean (window, delay, key, where, having, shards), as text: a
    # recovery store saved under one definition must not resume under another.
    definition: str = ""


@operator
def count_window(
    step_id: str,
    up: Stream[TimedBatch[E]],
    key: Callable[[E], Hashable],
    window: Window,
    delay_ms: int,
    where: Callable[[E], bool] | None = None,
    having: Callable[[int], bool] | None = None,
    shards: int = DEFAULT_SHARDS,
) -> WindowOut[E]:
    """Count events per key and event-time window, like Spark's
    `withWatermark(delay).where(...).groupBy(key, window(...)).count()` in append mode.

    ```python
    from operator import attrgetter

    from operators.windows import Sliding, count_window

    # html pages per user per minute, a new window every 5 s, 60 s watermark delay
    pages = count_window("pages_per_min", clicks, attrgetter("userid"),
                         Sliding(60_000, 5_000), delay_ms=60_000,
                         where=lambda c: "html" in c.request)
    op.inspect("rows", pages.counts)   # [WindowCount(12, start, end, 7), ...]
    op.inspect("late", pages.late)     # [LateEvent(click, 12, ts, wm, 12, 12, reason, origin)]
    ```

    :arg key: Group key of an event; `None` is a key like any other.
    :arg window: `Sliding(length, slide)`, `Tumbling(length)` or `Session(gap)`.
    :arg delay_ms: Watermark delay: how far behind the stream's progress an
        event may arrive and still be counted.
    :arg where: Counts only the events for which it is true, like SQL `WHERE`. The
        others still move event time on: progress is what was read, as in Spark.
    :arg having: Keeps only windows whose final count passes this test.
    :arg shards: Number of state shards; fixed for the life of a recovery store.
    :returns: `counts` (final window counts) and `late` (events that missed
        some or all of their windows), both as lists per shard activation, and
        `stats` (watermark and state size, for monitoring).
    """
    if delay_ms < 0:
        raise ValueError("delay must not be negative")
    combine: Combine
    if isinstance(window, Session):
        combine = partial(combine_sessions, gap=window.gap_ms, delay=delay_ms)
    else:
        combine = partial(combine_panes, slide=window.slide_ms, delay=delay_ms)
    keyed = op.flat_map("shard", up, Splitter(key, where, shards, combine))

    stats = WindowStats(delay_ms)

    def build(resume: tuple | None) -> ShardLogic:
        logic: ShardLogic
        if isinstance(window, Session):
            logic = SessionLogic(window, delay_ms, having, resume)
        else:
            logic = SlidingLogic(window, delay_ms, having, resume)
        stats.shards.add(logic)
        return logic

    results = op.key_rm("unshard", op.stateful_batch("count", keyed, build))
    counts = op.filter_map("counts", results, lambda r: r[0] or None)
    late = op.filter_map("late", results, lambda r: r[1] or None)
    definition = (
        f"{window}, delay {delay_ms} ms, key {describe(key)}, where {describe(where)}, "
        f"having {describe(having)}, {shards} shards"
    )
    return WindowOut(counts, late, stats, definition)


def describe(fn: Callable | None) -> str:
    """What a function computes, as one line of text that does not depend on how it is
    spelt: `attrgetter('userid')`, or a lambda's (or function's) syntax tree written
    back as code, with the constants it reads from its closure or module put in.

    `ownership.definition` compares these by meaning (argument names do not count),
    so reformatting a lambda or renaming its argument resumes a store, while a changed
    constant does not.
    """
    if fn is None:
        return "none"
    if isinstance(fn, attrgetter | itemgetter):
        return repr(fn).removeprefix("operator.")
    node = _syntax_of(fn)
    if node is None:
        return getattr(fn, "__qualname__", repr(fn))
    return " ".join(ast.unparse(_Constants(fn).visit(node)).split())


def _syntax_of(fn: Callable) -> ast.Lambda | ast.FunctionDef | None:
    """The syntax tree of a lambda or function, found in its module's source."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    try:
        lines, _ = inspect.findsource(code)
    except (OSError, TypeError):
        return None
    tree = ast.parse("".join(lines))
    found = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Lambda | ast.FunctionDef)
        and code.co_firstlineno in {n.lineno, *(d.lineno for d in getattr(n, "decorator_list", []))}
        and (isinstance(n, ast.Lambda) or n.name == code.co_name)
    ]
    if len(found) > 1:  # several lambdas on one line: the one that compiles to `code`
        found = [n for n in found if _compiles_to(n, code)] or found[:1]
    return found[0] if found else None


def _compiles_to(node: ast.Lambda | ast.FunctionDef, code: CodeType) -> bool:
    statement = node if isinstance(node, ast.FunctionDef) else ast.Expr(node)
    module = ast.fix_missing_locations(ast.Module(body=[statement], type_ignores=[]))
    inner = [c for c in compile(module, "<describe>", "exec").co_consts if isinstance(c, CodeType)]
    # Compiled alone, the names it reads from a closure become globals.
    return bool(inner) and (inner[0].co_consts, set(inner[0].co_names)) == (
        code.co_consts,
        set(code.co_names) | set(code.co_freevars),
    )


class _Constants(ast.NodeTransformer):
    """Puts in the values of the plain constants (numbers, strings) a function reads from
    its closure or its module, so that changing one changes the description."""

    def __init__(self, fn: Callable) -> None:
        code = fn.__code__
        cells = dict(zip(code.co_freevars, fn.__closure__ or (), strict=False))
        self.values: dict[str, bool | int | float | str | bytes | None] = {}
        # co_names also holds attribute names (`c.status`): a global of that name must
        # not replace the function's own argument or local of the same name.
        for name in set(code.co_names + code.co_freevars) - set(code.co_varnames):
            if name in cells:
                try:
                    value = cells[name].cell_contents
                except ValueError:  # an empty cell
                    continue
            elif name in fn.__globals__:
                value = fn.__globals__[name]
            else:
                continue
            if isinstance(value, bool | int | float | str | bytes) or value is None:
                self.values[name] = value

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if isinstance(node.ctx, ast.Load) and node.id in self.values:
            return ast.copy_location(ast.Constant(self.values[node.id]), node)
        return node
