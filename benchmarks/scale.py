"""What a user feels: whole `python -m bytewax.run` processes, timed as a backfill is timed,
with the CPU each process spent (`os.wait4`'s rusage: user + system, steadier than wall
time on this noisy machine). The runs a row compares take turns (`in_turns`).

Rows, each a ratio within one run:
- start-up: `import dataflows.clickstream`, and a whole 10-record run;
- steady state: CPU µs per record of 1 worker from Kafka, less a run of 100 records (which
  flushes, so Polars' import is start-up in both);
- the total CPU of 2 (and 4) processes against 1 worker on the same records, from Kafka
  and from a replay file;
- wall time: 1 worker and 2 processes from Kafka against Spark Structured Streaming
  `local[2]` running the notebook's two queries on the same topic (`benchmarks/spark_kafka.py`,
  the named baseline; needs scripts/setup_spark.sh); 2 processes against 1 worker;
- from a replay file: 1 worker against a naive Bytewax dataflow (`benchmarks/naive.py`:
  JSON per record and Bytewax's built-in windows, as its docs write it).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from benchmarks.common import ROOT, Record
from benchmarks.kafka import bootstrap_servers
from infra.cluster import local_cluster

if TYPE_CHECKING:
    from kafka_client.settings import KafkaSettings

SPARK_PYTHON = ROOT / ".cache/spark/venv/bin/python"
RUNS = 3
FEW = 100  # records of the start-up run from Kafka


class Timed(NamedTuple):
    wall: float  # seconds, first start to last end
    cpu: float  # CPU seconds of all processes


def timed(commands: Sequence[Sequence[str]], env: dict[str, str]) -> Timed:
    """Run `commands` side by side to their ends; a failure is an error."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            list(c), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for c in commands
    ]
    cpu = 0.0
    failed = []
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        if p.returncode != 0:
            assert p.stderr is not None
            failed.append(p.stderr.read().decode()[-2000:])
    wall = time.perf_counter() - start
    for p in procs:
        assert p.stderr is not None
        p.stderr.close()
    if failed:
        raise RuntimeError(f"a benchmark run failed:\n{failed[0]}")
    return Timed(wall, cpu)


def dataflow(flow: str, processes: int) -> list[list[str]]:
    """`python -m bytewax.run dataflows.FLOW:flow`, as one process or a cluster."""
    return local_cluster([sys.executable, "-m", "bytewax.run", f"dataflows.{flow}:flow"], processes)


Run = tuple[Sequence[Sequence[str]], dict[str, str], Path]  # commands, environment, outputs


def in_turns(runs: dict[str, Run]) -> dict[str, Timed]:
    """The least wall time and the least CPU of `RUNS` runs of each, each into a new output.

    The runs take turns (a, b, a, b, ...): this machine's speed drifts by a fifth within
    minutes (1 worker took 2.54 CPU-s, then 2.94 ten minutes later), so runs of one kind
    measured after all runs of another would put the drift into the ratio."""
    times: dict[str, list[Timed]] = {name: [] for name in runs}
    for attempt in range(RUNS):
        for name, (commands, env_of, out) in runs.items():
            output = out / f"{len(list(out.glob('*')))}-{attempt}"  # none yet: 0
            times[name].append(timed(commands, {**env_of, "CLICKSTREAM_OUTPUT": str(output)}))
    return {
        name: Timed(min(r.wall for r in done), min(r.cpu for r in done))
        for name, done in times.items()
    }


def pipeline_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKSTREAM", "KAFKA"))}
    return {**env, "CLICKSTREAM_METRICS_PORT": "", **settings}


def bench_startup(record: Record, tmp: Path) -> float:
    """The start-up rows; returns the CPU seconds of a 10-record run."""
    env = pipeline_env(
        CLICKSTREAM_SOURCE="datagen",
        CLICKSTREAM_DATAGEN_COUNT="10",
        CLICKSTREAM_DATAGEN_RATE="100000",
    )
    timed(dataflow("clickstream", 1), {**env, "CLICKSTREAM_OUTPUT": str(tmp / "warm")})  # cache
    bare_import = [[sys.executable, "-c", "import bytewax.operators, confluent_kafka"]]
    timings = in_turns(
        {
            "bare": (bare_import, env, tmp),
            "imports": ([[sys.executable, "-c", "import dataflows.clickstream"]], env, tmp),
            "run": (dataflow("clickstream", 1), env, tmp / "ten"),
        }
    )
    bare, imports, run = timings["bare"], timings["imports"], timings["run"]
    record("scale", "import dataflows.clickstream (wall s)", imports.wall, "bare", bare.wall)
    record("scale", "a 10-record run, whole process (wall s)", run.wall, "import", imports.wall)
    record("scale", "a 10-record run (CPU s)", run.cpu, "bytewax + confluent import", bare.cpu)
    return run.cpu


def bench_kafka_scale(n: int, record: Record, tmp: Path, startup_cpu: float) -> None:
    from tools.produce import create_topics, produce_dump, replay_to_new_topics
    from tools.replay_gen import generate

    with bootstrap_servers(tmp) as bootstrap:
        dump = tmp / "dump"
        generate(dump, events=n, rate=500, partitions=4, jitter_ms=20_000, seed=11)
        kafka = replay_to_new_topics(bootstrap, dump, "scale")
        # The start-up run reads a few records, so that it flushes too: the sink imports
        # Polars at its first flush, a cost of every run that is not per record.
        few = f"{kafka.clickstream_topic}-few"
        create_topics(kafka, {few: {}}, 4)
        head = tmp / "few.jsonl"
        with (dump / "clickstream.jsonl").open("rb") as lines:
            head.write_bytes(b"".join(islice(lines, FEW)))
        produce_dump(kafka, head, few)
        print(f"scale: {n:,} records on 4 partitions of a local broker, bounded", flush=True)
        env = pipeline_env(
            CLICKSTREAM_SOURCE="kafka",
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            KAFKA_STOP_AT_END="true",
            CLICKSTREAM_TOPIC=kafka.clickstream_topic,
        )
        timings = in_turns(
            {
                "idle": (dataflow("clickstream", 1), {**env, "CLICKSTREAM_TOPIC": few}, tmp / "e"),
                "one": (dataflow("clickstream", 1), env, tmp / "k1"),
                "two": (dataflow("clickstream", 2), env, tmp / "k2"),
                "four": (dataflow("clickstream", 4), env, tmp / "k4"),
            }
        )
        idle, one, two, four = (timings[k] for k in ("idle", "one", "two", "four"))
        per_record = (one.cpu - idle.cpu) / (n - FEW) * 1e6
        floor = ceiling_cpu(kafka, n) / n * 1e6
        record(
            "scale",
            "steady CPU µs a record, 1 worker, Kafka",
            per_record,
            "confluent-kafka consume + JSON parse alone",
            floor,
        )
        record(
            "scale",
            f"start-up of a Kafka run, {FEW} records (CPU s)",
            idle.cpu,
            "10-record datagen run",
            startup_cpu,
        )
        record("scale", "CPU of 2 processes, Kafka (s)", two.cpu, "1 worker", one.cpu)
        record("scale", "CPU of 4 processes, Kafka (s)", four.cpu, "1 worker", one.cpu)
        record("scale", "records/s, 2 processes, Kafka", n / two.wall, "1 worker", n / one.wall)
        spark = spark_rate(bootstrap, kafka.clickstream_topic, n, tmp / "spark")
        if spark is not None:
            record("scale", "records/s, 1 worker, Kafka", n / one.wall, "Spark local[2]", spark)
            record("scale", "records/s, 2 processes, Kafka", n / two.wall, "Spark local[2]", spark)


def ceiling_cpu(kafka: KafkaSettings, n: int) -> float:
    """The least CPU seconds of `RUNS` runs of the raw consume + parse ceiling, in this
    process (`benchmarks.kafka.ceiling`)."""
    from benchmarks.kafka import ceiling
    from benchmarks.shapes import Click

    spent = []
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_SELF)
        ceiling(kafka, kafka.clickstream_topic, Click, n)
        after = resource.getrusage(resource.RUSAGE_SELF)
        spent.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return min(spent)


def spark_rate(bootstrap: str, topic: str, n: int, out: Path) -> float | None:
    """Records per second of Spark's best of `RUNS` runs of the notebook's two queries."""
    if not SPARK_PYTHON.exists():
        print("  Spark baseline skipped: run scripts/setup_spark.sh", flush=True)
        return None
    seconds = []
    for attempt in range(RUNS):
        where = str(out / str(attempt))
        proc = subprocess.run(
            [str(SPARK_PYTHON), str(ROOT / "benchmarks/spark_kafka.py"), bootstrap, topic, where],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        seconds.append(result["seconds"])
        print(f"  Spark run {attempt}: {result}", flush=True)
    return n / min(seconds)


def bench_replay_scale(n: int, record: Record, tmp: Path) -> None:
    from tools.replay_gen import generate

    dump = tmp / "replay"
    generate(dump, events=n, rate=500, partitions=4, jitter_ms=20_000, seed=13)
    print(f"scale: {n:,} records from a replay file", flush=True)
    env = pipeline_env(CLICKSTREAM_SOURCE=f"replay:{dump}")
    naive_cmd = [[sys.executable, "-m", "bytewax.run", "benchmarks.naive:flow"]]
    naive_input = dump / "clickstream.jsonl"
    timings = in_turns(
        {
            "one": (dataflow("clickstream", 1), env, tmp / "r1"),
            "two": (dataflow("clickstream", 2), env, tmp / "r2"),
            "naive": (naive_cmd, {**env, "NAIVE_REPLAY": str(naive_input)}, tmp / "nv"),
        }
    )
    one, two, naive = timings["one"], timings["two"], timings["naive"]
    record("scale", "CPU of 2 processes, replay (s)", two.cpu, "1 worker", one.cpu)
    record("scale", "records/s, 2 processes, replay", n / two.wall, "1 worker", n / one.wall)
    record("scale", "records/s, 1 worker, replay", n / one.wall, "naive Bytewax", n / naive.wall)


def bench_scale(scale: float, record: Record) -> None:
    n = int(956_000 * scale)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        startup_cpu = bench_startup(record, tmp)
        bench_replay_scale(n, record, tmp)
        bench_kafka_scale(n, record, tmp, startup_cpu)
