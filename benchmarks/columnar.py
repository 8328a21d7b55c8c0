"""Would columnar window state be faster? The map-side combine of `user_clickstream`'s
two tables (`user_ip_activity` counts per (username, ip, city, pane);
`click_user_sessions` runs per username) on the same decoded 2,000-record batches:
ours (`combine_panes`, `combine_sessions`: dicts and Counter) against the same rows
computed by Polars group-bys, including taking the columns out of the events and
the rows back out of the frame, which a dataflow would have to do too.
"""

from __future__ import annotations

import tempfile
import time
from itertools import islice
from operator import attrgetter
from pathlib import Path

import msgspec
import polars as pl

from benchmarks.common import Record
from benchmarks.shapes import UserClick
from operators.batches import TimedBatch
from operators.windows import Tumbling, combine_panes, combine_sessions
from sources.replay import parse_lines
from tools.replay_gen import generate

MINUTE, GAP = 60_000, 30_000


def _batches(path: Path) -> list[TimedBatch]:
    decode = msgspec.json.Decoder(UserClick, strict=False).decode
    out = []
    with path.open("rb") as f:
        while lines := list(islice(f, 2_000)):
            records = parse_lines(lines, range(1, len(lines) + 1))
            events = [decode(r.value) for r in records]
            times = [r.ts or 0 for r in records]
            out.append(TimedBatch("0", 1, events, times, [0] * len(times), 0, False))
    return out


def ours(batches: list[TimedBatch]) -> int:
    activity_key, session_key = attrgetter("username", "ip", "city"), attrgetter("username")
    rows = 0
    for b in batches:
        rows += len(combine_panes(b, activity_key, None, Tumbling(MINUTE), MINUTE) or [])
        rows += len(combine_sessions(b, session_key, None, GAP, GAP) or [])
    return rows


def with_polars(batches: list[TimedBatch]) -> int:
    schema = {"u": pl.String, "ip": pl.String, "city": pl.String, "t": pl.Int64}
    rows = 0
    for b in batches:
        ev = b.events
        df = pl.DataFrame(
            {
                "u": [e.username for e in ev],
                "ip": [e.ip for e in ev],
                "city": [e.city for e in ev],
                "t": b.times,
            },
            schema=schema,
        )
        pane = (pl.col("t") - pl.col("t") % MINUTE).alias("pane")
        activity = df.group_by("u", "ip", "city", pane).len()
        activity_rows = list(
            zip(
                zip(*(activity[c].to_list() for c in ("u", "ip", "city")), strict=True),
                activity["pane"].to_list(),
                activity["len"].to_list(),
                strict=True,
            )
        )
        new_run = (pl.col("t").diff().over("u").fill_null(0) > GAP).cum_sum().over("u")
        sessions = (
            df.lazy()
            .select("u", "t")
            .sort("u", "t")
            .with_columns(run=new_run)
            .group_by("u", "run")
            .agg(pl.col("t").first().alias("first"), pl.col("t").last().alias("last"), pl.len())
            .collect()
        )
        session_rows = list(
            zip(
                sessions["u"].to_list(),
                sessions["first"].to_list(),
                sessions["last"].to_list(),
                sessions["len"].to_list(),
                strict=True,
            )
        )
        rows += len(activity_rows) + len(session_rows)
    return rows


def bench_columnar(scale: float, record: Record) -> None:
    n = int(300_000 * scale)
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), events=n, rate=500, partitions=4, jitter_ms=20_000, seed=5)
        batches = _batches(Path(tmp, "user_clickstream.jsonl"))
    print(f"columnar: {n:,} decoded records in {len(batches)} batches", flush=True)
    rates: dict[str, float] = {}
    rows: dict[str, int] = {}
    for _ in range(3):  # best of three, interleaved
        for name, combine in (("ours", ours), ("polars", with_polars)):
            start = time.perf_counter()
            rows[name] = combine(batches)
            rates[name] = max(rates.get(name, 0.0), n / (time.perf_counter() - start))
    if rows["ours"] != rows["polars"]:
        raise SystemExit(f"columnar: the two disagree: {rows}")
    record(
        "columnar",
        "user_clickstream map-side combine, Polars group-bys",
        rates["polars"],
        "ours (dicts, Counter)",
        rates["ours"],
    )
