"""Benchmarks, each against a named baseline measured in the same run (`just bench`).

    python -m tools.bench [--only operators,dataflows,kafka] [--scale 1.0]

1. operators: our `count_window` (sliding 60 s/5 s, tumbling 60 s, session 30 s)
   against Bytewax's built-in `count_window` with the equivalent windower, on the
   same events, single worker, at 40 and at 100,000 distinct keys.
2. dataflows: each whole dataflow from a replay file to Parquet, single worker,
   against the raw ceiling: reading and JSON-parsing the same file, no dataflow.
3. kafka: each dataflow reading a pre-filled topic from the real broker (bounded
   run) against confluent-kafka consuming and parsing the same topic; and our Kafka
   source with the parser alone in a Bytewax dataflow (no windows, no sink) against
   the same ceiling, the floor under any dataflow built this way.
4. sink, recovery: Parquet to the GCS emulator against local disk; recovery on/off.
5. columnar: the map-side combine of `user_clickstream` done with Polars group-bys
   against ours, on the same decoded batches.

Figures are events per second of wall time on this machine; they are printed as a
Markdown table and written to bench-results/latest.md. Each group runs in a process
of its own. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import bytewax.operators as op
import bytewax.operators.windowing as bw
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from operators.batches import END, TimedBatch
from operators.windows import Session, Sliding, Tumbling, Window, count_window

S = 1_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RESULTS: list[tuple[str, str, float, str, float]] = []


class Ev(NamedTuple):
    key: str
    ts: int
    dt: datetime


class _Count(StatelessSinkPartition[Any]):
    def __init__(self, box: list[int]) -> None:
        self.box = box

    def write_batch(self, items: list[Any]) -> None:
        for item in items:
            value = item[1] if isinstance(item, tuple) and len(item) == 2 else item
            self.box[0] += len(value) if isinstance(value, list) else 1


class CountingSink(DynamicSink[Any]):
    """Counts output rows; the cheapest possible sink, the same for both sides."""

    def __init__(self) -> None:
        self.box = [0]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Count:
        return _Count(self.box)


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
    batches = []
    high = -(2**62)
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        marks = []
        for e in chunk:
            high = max(high, e.ts)
            marks.append(high)
        batches.append(TimedBatch("p0", 1, chunk, [e.ts for e in chunk], marks, high))
    batches.append(TimedBatch("p0", 1, [], [], [], END))
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


def record(group: str, name: str, rate: float, baseline: str, base_rate: float) -> None:
    RESULTS.append((group, name, rate, baseline, base_rate))
    print(
        f"  {name}: {rate:,.0f} ev/s vs {baseline} {base_rate:,.0f} ev/s = {rate / base_rate:.1f}x",
        flush=True,
    )


def bench_operators(scale: float) -> None:
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


def _parse_ceiling(path: Path, shape: type) -> float:
    """Read the dump and decode envelopes and payloads as fast as we know how."""
    from itertools import islice

    import msgspec

    from sources.replay import parse_lines

    decode: Callable[[Any], Any] = msgspec.json.Decoder(shape, strict=False).decode
    start = time.perf_counter()
    n = 0
    with path.open("rb") as f:
        while lines := list(islice(f, 2_000)):
            for rec in parse_lines(lines, n):
                decode(rec.value)
            n += len(lines)
    return n / (time.perf_counter() - start)


def bench_dataflows(scale: float) -> None:
    import dataflows.clickstream
    import dataflows.user_clickstream
    from config import Settings
    from events.schema import Click, UserClick
    from tools.replay_gen import generate

    n = int(500_000 * scale)
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp, "dump")
        generate(dump, events=n, rate=500, partitions=4, jitter_ms=20_000, seed=3)
        print(f"dataflows: {n:,} records from a replay file to Parquet, 1 worker", flush=True)
        flows: list[tuple[str, Callable[[Settings], Dataflow], type, str]] = [
            ("clickstream", dataflows.clickstream.build, Click, "clickstream.jsonl"),
            (
                "user_clickstream",
                dataflows.user_clickstream.build,
                UserClick,
                "user_clickstream.jsonl",
            ),
        ]
        for name, build, shape, file in flows:
            rate = 0.0
            for attempt in range(3):  # best of three, for both sides: this machine is noisy
                output = str(Path(tmp, f"{name}{attempt}"))
                settings = Settings(source="replay", replay_path=dump, output=output)
                start = time.perf_counter()
                run_main(build(settings))
                rate = max(rate, n / (time.perf_counter() - start))
            ceiling = max(_parse_ceiling(dump / file, shape) for _ in range(3))
            record("dataflow", f"{name} replay -> Parquet", rate, "read + JSON-parse only", ceiling)


def write_results() -> None:
    lines = [
        "| benchmark | events/s | baseline | baseline events/s | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for group, name, rate, baseline, base in RESULTS:
        lines.append(
            f"| {group}: {name} | {rate:,.0f} | {baseline} | {base:,.0f} | {rate / base:.2f}x |"
        )
    text = "\n".join(lines)
    Path("bench-results").mkdir(exist_ok=True)
    Path("bench-results/latest.md").write_text(text + "\n")
    print("\n" + text)


def run_group(group: str, scale: float) -> None:
    if group == "operators":
        bench_operators(scale)
    elif group == "dataflows":
        bench_dataflows(scale)
    elif group == "kafka":
        from tools.bench_kafka import bench_kafka

        bench_kafka(scale, record)
    elif group == "sink":
        from tools.bench_sink import bench_sink

        bench_sink(scale, record)
    elif group == "recovery":
        from tools.bench_sink import bench_recovery

        bench_recovery(scale, record)
    elif group == "columnar":
        from tools.bench_columnar import bench_columnar

        bench_columnar(scale, record)
    else:
        raise SystemExit(f"error: unknown benchmark group {group!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description="benchmarks")
    parser.add_argument("--only", default="operators,dataflows,kafka,sink,recovery,columnar")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply event counts")
    parser.add_argument("--results-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    groups = args.only.split(",")
    if args.results_to is not None or len(groups) == 1:
        for group in groups:
            run_group(group, args.scale)
        if args.results_to is not None:
            args.results_to.write_text(json.dumps(RESULTS))
            return
    else:
        # Each group in a process of its own: a heap left behind by one group (the
        # built-in windowing at 100,000 keys) must not slow the next one down.
        with tempfile.TemporaryDirectory() as tmp:
            for group in groups:
                out = Path(tmp, f"{group}.json")
                cmd = [sys.executable, "-m", "tools.bench", "--only", group]
                cmd += ["--scale", str(args.scale), "--results-to", str(out)]
                subprocess.run(cmd, check=True)
                RESULTS.extend(tuple(r) for r in json.loads(out.read_text()))
    write_results()


if __name__ == "__main__":
    main()
