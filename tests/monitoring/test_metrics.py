"""`/metrics` and `/health` of running `python -m bytewax.run` processes: the figures
agree with the input and the output tables, on replay and on Kafka with two processes,
and `/health` turns 503 while storage is down past its retries and 200 when it is back."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from events.parse import reason_kind
from infra.server import free_port
from kafka_client.settings import KafkaSettings
from tests.processes import ROOT, clean_env
from tests.tables import read_rows
from tools.produce import create_topics, produce_dump
from tools.replay_gen import generate

Samples = dict[str, list[tuple[dict[str, str], float]]]
TABLES = ("pages_per_min", "errors_per_min_alert", "late_events", "dead_letters")
LINGER = "/metrics stays up"


def _free_ports(n: int) -> int:
    """The first of `n` consecutive free ports (process i serves on base + i)."""
    for _ in range(100):
        base = free_port()  # below the ephemeral range, see there
        try:
            for i in range(1, n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + i))
        except OSError:
            continue
        return base
    raise RuntimeError("no consecutive free ports")


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as ex:
        return ex.code, json.loads(ex.read())


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        v for got, v in samples.get(name, []) if all(got.get(k) == w for k, w in labels.items())
    )


def merged(scrapes: list[Samples]) -> Samples:
    out: Samples = defaultdict(list)
    for samples in scrapes:
        for name, values in samples.items():
            out[name].extend(values)
    return out


@contextmanager
def dataflow(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} in {timeout_s} s"
        time.sleep(0.1)


def parquet_files(output: Path, table: str) -> int:
    return sum(1 for p in (output / table).rglob("*.parquet") if not p.name.startswith("."))


def assert_agrees_with_output(samples: Samples, output: Path, flow: str) -> None:
    """Dead letters, late events, rows and files written match the tables on disk."""
    dead = read_rows(output, "dead_letters")
    assert dead, "the test input should make dead letters"
    by_reason = Counter(reason_kind(d[7]) for d in dead)
    for reason, n in by_reason.items():
        assert total(samples, "clickstream_dead_letters_total", reason=reason) == n, reason
    assert total(samples, "clickstream_dead_letters_total", dataflow=flow) == len(dead)
    late = Counter(row[1] for row in read_rows(output, "late_events"))
    assert sum(late.values()), "the test input should make late events"
    for table in ("pages_per_min", "errors_per_min_alert"):
        assert total(samples, "clickstream_late_events_total", table=table) == late[table]
    for table in TABLES:
        rows = len(read_rows(output, table))
        assert total(samples, "clickstream_rows_written_total", table=table) == rows, table
        files = total(samples, "clickstream_files_written_total", table=table)
        assert files == parquet_files(output, table), table
    # a bounded run ends with every window emitted: nothing is held
    for table in ("pages_per_min", "errors_per_min_alert"):
        assert total(samples, "clickstream_open_windows", table=table) == 0
    last_flush = max(v for _, v in samples["clickstream_last_flush_timestamp_seconds"])
    assert time.time() - 120 < last_flush <= time.time()


def _dump(out: Path) -> int:
    """A clickstream dump with late records (jitter past the delay) and three bad records:
    two not JSON, one stamped in 2100. Returns the number of records."""
    generate(out, events=4_000, rate=30, partitions=4, jitter_ms=90_000, seed=41)
    lines = (out / "clickstream.jsonl").read_bytes().splitlines()
    for at in (100, 2_000):
        bad = orjson.loads(lines[at])
        bad["payload"] = "{not json"
        lines.insert(at + 1, orjson.dumps(bad))
    future = orjson.loads(lines[3_000])
    future["ts"] = 4_102_444_800_000
    lines.insert(3_001, orjson.dumps(future))
    (out / "clickstream.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


def test_metrics_of_a_replay_run_agree_with_input_and_output(tmp_path):
    records = _dump(tmp_path / "dump")
    port = _free_ports(1)
    env = clean_env(
        CLICKSTREAM_SOURCE=f"replay:{tmp_path / 'dump'}",
        CLICKSTREAM_OUTPUT=str(tmp_path / "out"),
        CLICKSTREAM_METRICS_PORT=str(port),
        CLICKSTREAM_METRICS_LINGER="60",
    )
    log = tmp_path / "run.log"
    with dataflow(["dataflows.clickstream:flow", "-w", "2"], env, log) as proc:
        wait_for(log, LINGER, proc)
        samples = scrape(port)
        assert health(port)[0] == 200
    assert total(samples, "clickstream_records_read_total") == records
    for p in range(4):
        assert total(samples, "clickstream_records_read_total", partition=str(p)) > 0
    assert total(samples, "clickstream_dead_letters_total", reason="not JSON") == 2
    assert total(samples, "clickstream_dead_letters_total", reason="timestamp in the future") == 1
    assert_agrees_with_output(samples, tmp_path / "out", "clickstream")
    assert "progress: 100%" in log.read_text()


def test_metrics_of_two_kafka_processes_agree_with_input_and_output(
    kafka_bootstrap, topic_name, tmp_path
):
    _dump(tmp_path / "dump")
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    allow_future = {"message.timestamp.after.max.ms": str(2**63 - 1)}
    create_topics(kafka, {topic_name: allow_future}, 4)
    produced = produce_dump(kafka, tmp_path / "dump" / "clickstream.jsonl", topic_name)
    per_partition = Counter(
        orjson.loads(line)["partition"]
        for line in (tmp_path / "dump" / "clickstream.jsonl").read_bytes().splitlines()
    )
    port = _free_ports(2)

    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    env = clean_env(
        CLICKSTREAM_SOURCE="kafka",
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        CLICKSTREAM_TOPIC=topic_name,
        KAFKA_STOP_AT_END="true",
        CLICKSTREAM_OUTPUT=str(tmp_path / "out"),
        CLICKSTREAM_METRICS_PORT=str(port),
        CLICKSTREAM_METRICS_LINGER="60",
    )
    logs = [tmp_path / "p0.log", tmp_path / "p1.log"]
    args = ["dataflows.clickstream:flow", "-a", addresses]
    with (
        dataflow([*args, "-i", "0"], env, logs[0]) as p0,
        dataflow([*args, "-i", "1"], env, logs[1]) as p1,
    ):
        wait_for(logs[0], LINGER, p0)
        wait_for(logs[1], LINGER, p1)
        scrapes = [scrape(port), scrape(port + 1)]
    # each process counts what it read itself
    assert all(total(s, "clickstream_records_read_total") > 0 for s in scrapes)
    samples = merged(scrapes)
    assert total(samples, "clickstream_records_read_total") == produced
    for p, n in per_partition.items():
        assert total(samples, "clickstream_records_read_total", partition=str(p)) == n
    lags = samples["clickstream_consumer_lag_records"]
    assert len(lags) == 4 and all(v == 0 for _, v in lags)
    assert_agrees_with_output(samples, tmp_path / "out", "clickstream")


# One table whose windows close within seconds of the wall clock (the repo's close a
# minute or two after their records), so that rows are written before and after an outage.
QUICK_TABLE = """
SELECT userid, window.start AS event_start, window.end AS event_end, count(*) AS clicks
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 1 SECONDS
GROUP BY window(timestamp, '2 seconds'), userid
"""


def test_health_is_503_while_storage_fails_past_its_retries_and_200_after(gcs, tmp_path):
    port = _free_ports(1)
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "clicks_per_2s.sql").write_text(QUICK_TABLE)
    env = clean_env(
        CLICKSTREAM_TABLES=str(tables),
        CLICKSTREAM_DATAGEN_RATE="200",
        CLICKSTREAM_OUTPUT="gs://clickstream/out",
        STORAGE_EMULATOR_HOST=gcs.url,
        CLICKSTREAM_FLUSH_INTERVAL="0.5",
        CLICKSTREAM_STORAGE_RETRY_TIMEOUT="1",
        CLICKSTREAM_METRICS_PORT=str(port),
    )
    log = tmp_path / "run.log"

    def wait_health(status: int, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            got, body = health(port)
            if got == status:
                return body
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"/health {got} {body}, wanted {status}"
            time.sleep(0.5)

    with dataflow(["dataflows.clickstream:flow"], env, log) as proc:
        wait_for(log, "metrics on", proc)
        wait_health(200, 60)
        wait_for(log, "wrote", proc)
        gcs.stop()
        body = wait_health(503, 120)
        assert any("storage" in p for p in body["problems"]), body
        assert proc.poll() is None, "the run waits for storage instead of failing"
        gcs.start()
        wait_health(200, 120)
        written = total(scrape(port), "clickstream_rows_written_total")
        assert total(scrape(port), "clickstream_storage_retries_total") > 0
        # and it writes again
        deadline = time.monotonic() + 60
        while total(scrape(port), "clickstream_rows_written_total") <= written:
            assert time.monotonic() < deadline, "no rows written after storage came back"
            time.sleep(0.5)
