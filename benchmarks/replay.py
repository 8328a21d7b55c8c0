"""Each whole dataflow from a replay file to Parquet, single worker, against the raw
ceiling: reading and JSON-parsing the same file, no dataflow."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from benchmarks.common import Record


def best_replay_rate(
    build: Callable[[Any], Dataflow],
    dump: Path,
    outputs: Path,
    n: int,
    runs: int = 3,
    table_format: str = "parquet",
    tables: str | None = None,
) -> float:
    """Records per second of the best of `runs` runs of a dataflow over a replay dump,
    each into its own output under `outputs`: this machine is noisy."""
    from config import Settings

    rate = 0.0
    for attempt in range(runs):
        settings = Settings(
            source="replay",
            replay_path=dump,
            output=str(outputs / str(attempt)),
            table_format=table_format,  # type: ignore[arg-type]
            tables=tables,
        )
        start = time.perf_counter()
        run_main(build(settings))
        rate = max(rate, n / (time.perf_counter() - start))
    return rate


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
            for rec in parse_lines(lines, range(n + 1, n + 1 + len(lines))):
                decode(rec.value)
            n += len(lines)
    return n / (time.perf_counter() - start)


def bench_dataflows(scale: float, record: Record) -> None:
    import dataflows.clickstream
    import dataflows.user_clickstream
    from benchmarks.shapes import Click, UserClick
    from config import Settings
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
            # best of three for both sides
            rate = best_replay_rate(build, dump, Path(tmp, name), n)
            ceiling = max(_parse_ceiling(dump / file, shape) for _ in range(3))
            record("dataflow", f"{name} replay -> Parquet", rate, "read + JSON-parse only", ceiling)
            delta = best_replay_rate(
                build, dump, Path(tmp, f"{name}-delta"), n, table_format="delta"
            )
            record("dataflow", f"{name} replay -> Delta", delta, "the same to Parquet", rate)
