"""Our `count_window` against Bytewax's built-in `count_window` with the equivalent
windower, on the same events, single worker, at 40 and at 100,000 distinct keys."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import bytewax.operators as op
import bytewax.operators.windowing as bw
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from benchmarks.common import CountingSink, Record
from operators.batches import batches_of
from operators.windows import Session, Sliding, Tumbling, Window, count_window

S = 1_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Ev(NamedTuple):
    key: str
    ts: int
    dt: datetime


def make_events(n: int, keys: int, per_second: int, seed: int = 1) -> list[Ev]:
    rng = random.Random(seed)
    names = [f"user-{i}" for i in range(keys)]
    out = []
    base = 1_700_000_000_000
    for i in range(n):
        ts = base + i * 1000 // per_second - rng.randint(0, 2_000)  # a little disorder
        out.append(Ev(names[rng.randrange(keys)], ts, EPOCH + timedelta(milliseconds=ts)))
    return out


def ours(events: list[Ev], window: Window, batch: int = 2_000) -> tuple[float, int]:
    batches = batches_of(events, [e.ts for e in events], [batch])
    flow = Dataflow("ours")
    up = op.input("in", flow, TestingSource(batches))
    out = count_window("count", up, lambda e: e.key, window, 60 * S)
    sink = CountingSink()
    op.output("out", out.counts, sink)
    start = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - start, sink.box[0]


def builtin(events: list[Ev], window: Window) -> tuple[float, int]:
    align = datetime(2023, 1, 1, tzinfo=UTC)
    if isinstance(window, Session):
        windower: bw.Windower = bw.SessionWindower(gap=timedelta(milliseconds=window.gap_ms))
        wait = timedelta(milliseconds=window.gap_ms)
    elif window.length_ms == window.slide_ms:
        windower = bw.TumblingWindower(
            length=timedelta(milliseconds=window.length_ms), align_to=align
        )
        wait = timedelta(seconds=60)
    else:
        windower = bw.SlidingWindower(
            length=timedelta(milliseconds=window.length_ms),
            offset=timedelta(milliseconds=window.slide_ms),
            align_to=align,
        )
        wait = timedelta(seconds=60)
    flow = Dataflow("builtin")
    up = op.input("in", flow, TestingSource(events, batch_size=2_000))
    clock: bw.EventClock[Ev] = bw.EventClock(lambda e: e.dt, wait_for_system_duration=wait)
    out = bw.count_window("count", up, clock, windower, lambda e: e.key)
    sink = CountingSink()
    op.output("out", out.down, sink)
    start = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - start, sink.box[0]


def bench_operators(scale: float, record: Record) -> None:
    windows: list[tuple[str, Window]] = [
        ("sliding 60s/5s", Sliding(60 * S, 5 * S)),
        ("tumbling 60s", Tumbling(60 * S)),
        ("session gap 30s", Session(30 * S)),
    ]
    for keys, n in ((40, int(1_000_000 * scale)), (100_000, int(100_000 * scale))):
        events = make_events(n, keys, per_second=max(200, keys // 20))
        print(f"operators: {n:,} events over {keys:,} keys", flush=True)
        for label, window in windows:
            t_ours, rows_ours = ours(events, window)
            t_builtin, rows_builtin = builtin(events, window)
            record(
                "operator",
                f"{label}, {keys:,} keys ({rows_ours:,} rows; built-in {rows_builtin:,})",
                n / t_ours,
                "built-in count_window",
                n / t_builtin,
            )
