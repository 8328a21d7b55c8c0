"""The naive baseline of `just bench --only scale`: the notebook's two `clickstream` tables as
Bytewax's documentation would have a user write them. A line at a time from the replay
file, `json.loads` per record, Bytewax's built-in sliding windows per key with an event
clock, rows to a file. Not exact (the built-in windows re-emit after late data, see
docs/semantics.md); a measure of speed only.

    NAIVE_REPLAY=dump/clickstream.jsonl CLICKSTREAM_OUTPUT=out \
        python -m bytewax.run benchmarks.naive:flow
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.connectors.files import FileSink, FileSource
from bytewax.dataflow import Dataflow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def click(line: str) -> tuple[datetime, dict]:
    record = json.loads(line)
    ts = EPOCH + timedelta(milliseconds=record["ts"])
    return ts, json.loads(record["payload"])


def counts(
    name: str, clicks: op.Stream, key: str, slide: timedelta, keep: int = 0
) -> op.Stream[str]:
    clock: win.EventClock = win.EventClock(
        lambda c: c[0], wait_for_system_duration=timedelta(seconds=60)
    )
    windower = win.SlidingWindower(length=timedelta(seconds=60), offset=slide, align_to=EPOCH)
    out = win.count_window(f"{name}_count", clicks, clock, windower, lambda c: str(c[1][key]))
    rows = op.filter(f"{name}_having", out.down, lambda kv: kv[1][1] > keep)
    return op.map(f"{name}_row", rows, lambda kv: f"{name},{kv[0]},{kv[1][0]},{kv[1][1]}")


flow = Dataflow("naive_clickstream")
lines = op.input(
    "read", flow, FileSource(Path(os.environ.get("NAIVE_REPLAY", "clickstream.jsonl")))
)
clicks = op.map("parse", lines, click)
pages = op.filter("html", clicks, lambda c: "html" in c[1]["request"])
errors = op.filter("errors", clicks, lambda c: int(c[1]["status"]) > 400)
rows: op.Stream[str] = op.merge(
    "rows",
    counts("pages_per_min", pages, "userid", timedelta(seconds=5)),
    counts("errors_per_min_alert", errors, "status", timedelta(seconds=20), keep=5),
)
out = Path(os.environ.get("CLICKSTREAM_OUTPUT", "naive-out"))
out.mkdir(parents=True, exist_ok=True)
(out / "rows.csv").touch()  # FileSink writes to a file that exists
keyed = op.map("one_file", rows, lambda row: ("rows", row))  # FileSink routes by key
op.output("write", keyed, FileSink(out / "rows.csv"))
