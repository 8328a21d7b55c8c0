"""Declared streams: the `clickstream` dataflow with its events built from
`streams/clickstream.sql` (the columns its tables read, Spark's nulls) against the same
dataflow with the hand-written `Click` struct it had before streams were declared
(every field, strict), from a replay file to Parquet, one worker, in turns; the ratio
reported is the median of the pairs' CPU ratios."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import msgspec
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from benchmarks.common import Record
from benchmarks.shapes import Click, UserClick
from config import Settings
from dataflows.common import window_tables, write_tables
from events.parse import Parser
from events.schema import RawBatch
from operators.shards import DEFAULT_SHARDS
from sql import REPO_TABLES
from sql.table import compile_table
from tools.replay_gen import generate


def _hand_written(settings: Settings) -> Dataflow:
    """`clickstream` as it was built before streams were declared: the `Click` struct."""
    from operator import attrgetter

    import bytewax.operators as op

    from ownership import fence
    from sources import source_for
    from sql import load_streams

    def fenced(batch: RawBatch) -> RawBatch:
        fence()
        return batch

    events_of: dict[str, type[msgspec.Struct]] = {
        "clickstream": Click,
        "user_clickstream": UserClick,
    }
    tables = [
        compile_table(path.read_text(), path.stem, events_of, DEFAULT_SHARDS)
        for path in sorted(REPO_TABLES.glob("*.sql"))
    ]
    tables = [t for t in tables if t.stream == "clickstream"]
    flow = Dataflow("clickstream")
    stream = load_streams()["clickstream"]
    raw = op.input("read", flow, source_for(settings, stream, flow.flow_id))
    raw = op.map("fence", raw, fenced)
    parsed = op.map("parse", raw, Parser(Click, flow.flow_id, value_format="json"))
    events = op.map("events", parsed, attrgetter("events"))
    dead = op.filter_map("dead", parsed, lambda p: p.dead or None)
    write_tables(flow, settings, raw, dead, window_tables(events, tables))
    return flow


def bench_streams(scale: float, record: Record) -> None:
    import dataflows.clickstream

    n = int(600_000 * scale)
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp, "dump")
        generate(dump, events=n, rate=500, partitions=4, jitter_ms=20_000, seed=3)
        print(f"streams: {n:,} clickstream records from a replay file to Parquet, 1 worker")

        def cpu_rate(build, i: int, label: str) -> float:
            settings = Settings(source="replay", replay_path=dump, output=f"{tmp}/{label}-{i}")
            start = time.process_time()
            run_main(build(settings))
            return n / (time.process_time() - start)

        declared, hand = [], []
        for i in range(5):
            declared.append(cpu_rate(dataflows.clickstream.build, i, "declared"))
            hand.append(cpu_rate(_hand_written, i, "hand"))
        ratio = statistics.median(d / h for d, h in zip(declared, hand, strict=True))
        base = statistics.median(hand)
        record(
            "streams",
            "clickstream from streams/clickstream.sql, records per CPU-s (median pair ratio)",
            base * ratio,
            "the hand-written Click struct, as before",
            base,
        )
