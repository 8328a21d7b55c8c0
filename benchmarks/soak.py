"""Soak: does state stay flat as event time goes by? (`just soak`)

    python -m benchmarks.soak [--records 5000000] [--hours 6] [--users 10000]

Writes a replay dump per table dataflow: `records` clicks (and 2% more, so that the last
figures are taken before the end of input flushes every window) spread evenly over `hours` of
event time, from `users` distinct users (each with its own name and city, so every
table keys on them), 4 Kafka partitions interleaved, jitter within the watermark
delay. Runs each dataflow as `python -m bytewax.run` with `/metrics` on, and reads
its figures while it runs: the open windows of each table and the resident memory
at 1M, 2.5M and 5M records read (scaled with `--records`), and the peak RSS of the
process. Then `enrich` over the same clicks from a local broker, with the users
changing city now and then: the size of its users table and of the Kafka sink's
kept origins. Results go to stdout and bench-results/soak.md.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from events import datagen
from infra.server import free_port
from tools.replay_gen import kcat_line

ROOT = Path(__file__).resolve().parents[1]
FLOWS = {
    "clickstream": ("pages_per_min", "errors_per_min_alert"),
    "user_clickstream": ("click_user_sessions", "user_ip_activity"),
}
CITIES = ["Palo Alto", "San Francisco", "Raleigh", "London", "Frankfurt", "New York"]


def write_dumps(out: Path, records: int, hours: float, users: int, seed: int = 17) -> None:
    """Both dumps, `records` each, evenly over `hours` of event time."""
    rng = random.Random(seed)
    gen = datagen.ClickGenerator(seed)
    start = 1_700_000_000_000
    step = hours * 3_600_000 / records
    out.mkdir(parents=True, exist_ok=True)
    offsets = [0, 0, 0, 0]
    with (
        (out / "clickstream.jsonl").open("wb") as clicks,
        (out / "user_clickstream.jsonl").open("wb") as joined,
    ):
        for i in range(records):
            ts = start + int(i * step) - rng.randint(0, 20_000)
            click = gen.click()
            uid = rng.randrange(1, users + 1)
            click["userid"] = uid
            p = rng.randrange(4)
            clicks.write(
                kcat_line("clickstream", p, offsets[p], ts, str(click["ip"]), orjson.dumps(click))
                + b"\n"
            )
            value = {
                "USERNAME": f"user{uid:05d}",
                "REGISTERED_AT": 1_500_000_000_000 + uid,
                "IP": click["ip"],
                "CITY": CITIES[uid % len(CITIES)],
                "REQUEST": click["request"],
                "STATUS": int(str(click["status"])),
                "BYTES": int(str(click["bytes"])),
            }
            joined.write(
                kcat_line("USER_CLICKSTREAM", p, offsets[p], ts, str(uid), orjson.dumps(value))
                + b"\n"
            )
            offsets[p] += 1


def _scrape(port: int) -> dict[str, float]:
    """Sample name and labels -> value, e.g. 'clickstream_open_windows{table=pages_per_min}'."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            table = s.labels.get("table")
            key = f"{s.name}{{table={table}}}" if table else s.name
            out[key] = out.get(key, 0.0) + s.value
    return out


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak(
    flow: str, settings: dict[str, str], output: Path, marks: list[int], state: dict[str, str]
) -> tuple[list[dict], float]:
    """Run `flow` with `settings`; the `state` figures (label -> metric) and memory when
    the records read first pass each of `marks`, and the peak RSS."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CLICKSTREAM", "KAFKA"))},
        **settings,
        "CLICKSTREAM_OUTPUT": str(output),
        "CLICKSTREAM_METRICS_PORT": str(port),
        "CLICKSTREAM_METRICS_LINGER": "5",
    }
    log = output.parent / f"{flow}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", f"dataflows.{flow}:flow"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    samples: list[dict] = []
    peak = 0.0
    started = time.monotonic()
    try:
        pending = list(marks)
        while pending and proc.poll() is None:
            time.sleep(0.2)
            try:
                figures = _scrape(port)
            except OSError:
                continue
            read = figures.get("clickstream_records_read_total", 0.0)
            peak = max(peak, _peak_rss_mb(proc.pid))
            if read >= pending[0]:
                while pending and read >= pending[0]:
                    pending.pop(0)
                samples.append(
                    {
                        "records": int(read),
                        "seconds": time.monotonic() - started,
                        "rss_mb": figures.get("process_resident_memory_bytes", 0.0) / 2**20,
                        "state": {label: int(figures.get(m, 0)) for label, m in state.items()},
                    }
                )
        if pending:
            raise SystemExit(f"error: {flow} ended before {pending[0]:,} records; see {log}")
        while "/metrics stays up" not in log.read_text():
            if proc.poll() is not None:
                raise SystemExit(f"error: {flow} failed; see {log}")
            peak = max(peak, _peak_rss_mb(proc.pid))
            time.sleep(0.2)
        peak = max(peak, _peak_rss_mb(proc.pid))
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return samples, peak


def _open_windows(tables: tuple[str, ...]) -> dict[str, str]:
    return {table: f"clickstream_open_windows{{table={table}}}" for table in tables}


def soak_enrich(dump: Path, tmp: Path, records: int, users: int, marks: list[int]) -> tuple:
    """enrich over the same clicks from a local broker, with `users` users (one city
    change every 1,000 clicks): the users table and the sink's kept origins."""
    from infra import kafka_broker
    from kafka_client.settings import KafkaSettings
    from tools.produce import create_topics, produce_dump, producer, send

    broker = kafka_broker.start(tmp / "kafka")
    try:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
        topics: dict[str, dict[str, str]] = {
            "clickstream": {},
            "clickstream_users": {},
            "USER_CLICKSTREAM": {},
        }
        create_topics(kafka, topics, 4)
        p = producer(kafka)
        start = 1_700_000_000_000 - 60_000
        for uid in range(1, users + 1):
            user = {"user_id": uid, "username": f"user{uid:05d}", "city": CITIES[uid % 6]}
            send(
                p,
                "clickstream_users",
                key=str(uid).encode(),
                value=orjson.dumps(user),
                timestamp=start,
            )
        rng = random.Random(3)
        step = 6 * 3_600_000 / (records // 1_000)
        for i in range(records // 1_000):
            uid = rng.randrange(1, users + 1)
            user = {"user_id": uid, "username": f"user{uid:05d}", "city": rng.choice(CITIES)}
            send(
                p,
                "clickstream_users",
                key=str(uid).encode(),
                value=orjson.dumps(user),
                timestamp=start + int(i * step),
            )
        p.flush(60)
        print(f"soak: producing {records:,} clicks to the broker", flush=True)
        produce_dump(kafka, dump / "clickstream.jsonl", "clickstream")
        settings = {
            "CLICKSTREAM_SOURCE": "kafka",
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "KAFKA_STOP_AT_END": "true",
        }
        state = {
            "users held": "clickstream_join_table_rows",
            "kept origins": "clickstream_kafka_sink_kept_origins",
        }
        return soak("enrich", settings, tmp / "enrich", marks, state)
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="state and memory over a long event-time run")
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--no-kafka", action="store_true", help="skip enrich (needs Java)")
    args = parser.parse_args()
    marks = [args.records // 5, args.records // 2, args.records]
    lines = [
        f"Soak: {args.records:,} records per dataflow over {args.hours:g} h of event time, "
        f"{args.users:,} users, 4 partitions, 1 worker; the table dataflows from a replay "
        "file, enrich from the local broker (its records read count clicks and users).",
        "",
        "| dataflow | records read | seconds | RSS MiB | state |",
        "|---|---:|---:|---:|---|",
    ]

    def report(flow: str, samples: list[dict], peak: float) -> None:
        for s in samples:
            state = ", ".join(f"{label} {n:,}" for label, n in s["state"].items())
            lines.append(
                f"| {flow} | {s['records']:,} | {s['seconds']:.0f} | {s['rss_mb']:.0f} | {state} |"
            )
        lines.append(f"| {flow} | peak RSS (VmHWM) | | {peak:.0f} | |")
        print("\n".join(lines[-len(samples) - 1 :]), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp, "dump")
        print(f"soak: writing {args.records:,} records per dataflow", flush=True)
        # 2% more than the last mark: at the mark, the windows are still open
        write_dumps(dump, args.records * 51 // 50, args.hours * 51 / 50, args.users)
        for flow, tables in FLOWS.items():
            settings = {"CLICKSTREAM_SOURCE": f"replay:{dump}"}
            report(flow, *soak(flow, settings, Path(tmp, flow), marks, _open_windows(tables)))
        if not args.no_kafka:
            enrich_marks = [m + args.users for m in marks]
            report("enrich", *soak_enrich(dump, Path(tmp), args.records, args.users, enrich_marks))
    text = "\n".join(lines)
    Path("bench-results").mkdir(exist_ok=True)
    Path("bench-results/soak.md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
