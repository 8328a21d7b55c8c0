"""Benchmarks, each against a named baseline measured in the same run (`just bench`).

    python -m benchmarks.run [--only operators,dataflows,kafka] [--scale 1.0]

1. operators: our `count_window` (sliding 60 s/5 s, tumbling 60 s, session 30 s)
   against Bytewax's built-in `count_window` with the equivalent windower, on the
   same events, single worker, at 40 and at 100,000 distinct keys.
2. dataflows: each whole dataflow from a replay file to Parquet, single worker,
   against the raw ceiling: reading and JSON-parsing the same file, no dataflow;
   and the same dataflow writing Delta tables against it writing Parquet.
3. kafka: each dataflow reading a pre-filled topic from the real broker (bounded
   run) against confluent-kafka consuming and parsing the same topic; and our Kafka
   source with the parser alone in a Bytewax dataflow (no windows, no sink) against
   the same ceiling, the floor under any dataflow built this way.
4. sink, recovery: Parquet to the GCS emulator against local disk; Delta against
   Parquet, on local disk and on the emulator; recovery on/off.
5. columnar: the map-side combine of `user_clickstream` done with Polars group-bys
   against ours, on the same decoded batches.
6. sql: each dataflow with its tables from `tables/*.sql` against the same tables as
   Python `count_window` calls; and a table of five aggregates against count-only.
7. metrics: the `clickstream` dataflow with its metrics (scraped every second)
   against the same run with every metric update a no-op.
9. scale (first): whole processes as a user times them, CPU from rusage: start-up, steady
   CPU per record, 2 and 4 processes against 1, 1 worker and 2 processes against Spark
   Structured Streaming `local[2]` and a naive Bytewax dataflow (`benchmarks/scale.py`).
8. formats: the `clickstream` dataflow reading Avro, JSON Schema and Protobuf topics
   (real broker and Schema Registry) against the same events in JSON; our Avro batch
   decoding against confluent-kafka's `AvroDeserializer` per record.

10. streams: the `clickstream` dataflow with its events built from its declaration
   (`streams/clickstream.sql`) against the hand-written struct it had before, median
   of paired CPU ratios.

The soak (state and memory over hours of event time) is `python -m benchmarks.soak`;
Delta compaction after a live run is `python -m benchmarks.compaction`.

Figures are events per second of wall time on this machine; they are printed as a
Markdown table and written to bench-results/latest.md. Each group runs in a process
of its own. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS: list[tuple[str, str, float, str, float]] = []


def figure(value: float) -> str:
    """Rates as whole numbers, seconds and microseconds with three digits."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def record(group: str, name: str, rate: float, baseline: str, base_rate: float) -> None:
    """One row: `rate` is events per second unless `name` gives its unit, e.g. `(CPU s)`."""
    RESULTS.append((group, name, rate, baseline, base_rate))
    print(
        f"  {name}: {figure(rate)} vs {baseline} {figure(base_rate)} = {rate / base_rate:.2f}x",
        flush=True,
    )


def write_results() -> None:
    lines = [
        "| benchmark | figure (events/s unless named) | baseline | baseline figure | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for group, name, rate, baseline, base in RESULTS:
        lines.append(
            f"| {group}: {name} | {figure(rate)} | {baseline} | {figure(base)} | "
            f"{rate / base:.2f}x |"
        )
    text = "\n".join(lines)
    Path("bench-results").mkdir(exist_ok=True)
    Path("bench-results/latest.md").write_text(text + "\n")
    print("\n" + text)


# group -> (module, function(scale, record)); imported only when run: each group runs in
# a process of its own and loads only what it needs
GROUPS = {
    "operators": ("benchmarks.windowing", "bench_operators"),
    "dataflows": ("benchmarks.replay", "bench_dataflows"),
    "kafka": ("benchmarks.kafka", "bench_kafka"),
    "sink": ("benchmarks.sink", "bench_sink"),
    "recovery": ("benchmarks.sink", "bench_recovery"),
    "columnar": ("benchmarks.columnar", "bench_columnar"),
    "sql": ("benchmarks.sql_tables", "bench_sql"),
    "metrics": ("benchmarks.metrics_cost", "bench_metrics"),
    "formats": ("benchmarks.formats", "bench_formats"),
    "scale": ("benchmarks.scale", "bench_scale"),
    "streams": ("benchmarks.streams", "bench_streams"),
}


def run_group(group: str, scale: float) -> None:
    if group not in GROUPS:
        raise SystemExit(f"error: unknown benchmark group {group!r}; one of {', '.join(GROUPS)}")
    module, function = GROUPS[group]
    getattr(importlib.import_module(module), function)(scale, record)


def main() -> None:
    parser = argparse.ArgumentParser(description="benchmarks")
    parser.add_argument(
        "--only",
        default=(
            "scale,operators,dataflows,kafka,sink,recovery,columnar,sql,metrics,formats,streams"
        ),
    )
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
                cmd = [sys.executable, "-m", "benchmarks.run", "--only", group]
                cmd += ["--scale", str(args.scale), "--results-to", str(out)]
                subprocess.run(cmd, check=True)
                RESULTS.extend(tuple(r) for r in json.loads(out.read_text()))
    write_results()


if __name__ == "__main__":
    main()
