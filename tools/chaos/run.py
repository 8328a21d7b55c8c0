"""One chaos run: the whole local deployment under load and under a nemesis, then the
independent checker's verdict (`tools.chaos.checker`).

What runs, all on the real components the suite starts:

- a broker, a Schema Registry (behind a `Gate`), the GCS emulator and Alertmanager
  (behind the `AlertRecorder`);
- the `Workload` producing Avro clicks at a set rate;
- the three dataflows, each a 2-process cluster with recovery under a `Cluster`
  supervisor: `enrich` (clicks + users -> USER_CLICKSTREAM, its dead letters as Parquet),
  `clickstream` (Parquet on GCS, alert rows to Alertmanager) and `user_clickstream`
  (Delta on GCS, read by a poller during the run);
- the `Nemesis`.

At the end the producer stops, the faults end, and each cluster is stopped (SIGTERM) and
started once more with `KAFKA_STOP_AT_END=true` to drain what is left: `enrich` first,
then the two table dataflows. The run then dumps every topic (`dump/`, with the schemas
its values were written with) and copies every output (`output/`), so that any checker
can read them, and stops everything it started.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from infra import kafka_broker, monitoring, schema_registry
from infra.gcs_emulator import GcsEmulator
from kafka_client.admin import client_config
from kafka_client.settings import KafkaSettings, RegistrySettings
from tools.chaos.alerts import AlertRecorder
from tools.chaos.checker import Verdict, check
from tools.chaos.gate import Gate
from tools.chaos.nemesis import Nemesis, World
from tools.chaos.report import timeline_svg
from tools.chaos.supervisor import ChaosFailure, Cluster
from tools.chaos.workload import Workload

BUCKET = "clickstream"
LEASE_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 600.0
MAX_FUTURE_SKEW_S = 300  # the workload's far-future clicks are 55 minutes ahead
FLOWS = {  # dataflow -> (its output's table format, KAFKA_VALUE_FORMAT)
    "enrich": ("parquet", "avro"),
    "clickstream": ("parquet", "auto"),  # auto: the bad records are not Avro
    "user_clickstream": ("delta", "avro"),
}


@dataclass
class Options:
    minutes: float
    seed: int
    workdir: Path
    rate: float = 200.0
    skew: float = 0.3
    extra_faults: int | None = None  # beyond one of each kind; None: one a minute


def chaos(options: Options) -> tuple[Verdict, str]:
    """Run, check, and return the verdict and its one line."""
    work = options.workdir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    seconds = options.minutes * 60
    # what the run's own clients log (librdkafka's complaints while the broker is away)
    # goes to its file, not to the console
    handler = logging.FileHandler(work / "chaos.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        return _chaos(options, work, seconds)
    except BaseException:
        # interrupted (Ctrl-C) or failed: stop whatever the run started, faults' too
        for pid, _ in _running_for(work):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _chaos(options: Options, work: Path, seconds: float) -> tuple[Verdict, str]:
    started: list[object] = []
    problems: list[str] = []
    broker = kafka_broker.start(work / "kafka")
    started.append(broker)
    try:
        registry = schema_registry.start(work / "registry")
        started.append(registry)
        registry_gate = Gate(registry.port)
        gcs = GcsEmulator(work / "gcs" / "root")
        gcs.create_bucket(BUCKET)
        gcs.start()
        started.append(gcs)
        storage_gates = (Gate(gcs.port), Gate(gcs.xml_port))
        # this process reads the Delta tables during the run (`_poll_delta`)
        os.environ.update(STORAGE_EMULATOR_HOST=gcs.url, STORAGE_EMULATOR_XML_HOST=gcs.xml_url)
        am_config = monitoring.alertmanager_config()
        alertmanager = monitoring.start_alertmanager(work / "alertmanager", am_config)
        started.append(alertmanager)
        recorder = AlertRecorder(alertmanager.url, work / "alerts-accepted.jsonl")

        suffix = f"{options.seed}-{int(time.time())}"
        kafka = KafkaSettings(
            bootstrap_servers=broker.bootstrap,
            clickstream_topic=f"chaos-clickstream-{suffix}",
            users_topic=f"chaos-users-{suffix}",
            user_clickstream_topic=f"chaos-user-clickstream-{suffix}",
            value_format="avro",
            registry=RegistrySettings(
                f"http://127.0.0.1:{registry_gate.port}{schema_registry.API}"
            ),
        )
        workload = Workload(kafka, options.seed, options.rate, options.skew)
        workload.create_topics()
        clusters = {
            name: Cluster(
                name,
                _env(kafka, storage_gates, recorder, name),
                _store(work / f"recovery-{name}"),
                work / f"{name}.log",
            )
            for name in FLOWS
        }
        world = World(
            work, kafka, broker, registry_gate, gcs, storage_gates, alertmanager, am_config,
            clusters,
            LEASE_TIMEOUT_S, longest_outage_s=min(60.0, max(30.0, seconds / 4)),
        )  # fmt: skip
        for cluster in clusters.values():
            cluster.start()
        workload.start()
        began_ms = workload.started_ms
        extra = options.extra_faults if options.extra_faults is not None else int(options.minutes)
        nemesis = Nemesis(world, options.seed, seconds, extra)
        stop = threading.Event()
        watchers = [
            threading.Thread(target=nemesis.run, args=(stop,), daemon=True),
            threading.Thread(target=_poll_delta, args=(work, gcs, stop), daemon=True),
            threading.Thread(target=_sample, args=(work, kafka, workload, stop), daemon=True),
        ]
        for w in watchers:
            w.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            _tend(clusters)
        workload.stop()
        ended_ms = int(time.time() * 1000)
        while watchers[0].is_alive():  # the faults in force end
            _tend(clusters)
        stop.set()
        for w in watchers[1:]:
            w.join()
        problems += nemesis.errors
        problems += [f"the producer: {n} records failed: {e}" for e, n in workload.failed.items()]
        _drain(clusters)
        dump = work / "dump"
        _dump(kafka, registry, dump)
        output = work / "output"
        _copy_output(gcs, output)
        run = {
            "seed": options.seed,
            "minutes": options.minutes,
            "began_ms": began_ms,
            "ended_ms": ended_ms,
            "dump": str(dump),
            "output": str(output),
            "topics": {
                "clicks": kafka.clickstream_topic,
                "users": kafka.users_topic,
                "joined": kafka.user_clickstream_topic,
            },
            "workload": {"sent": dict(workload.sent), "delivered": workload.delivered},
            "faults": dict(nemesis.injected),
            "overlapping_faults": nemesis.overlaps(),
            "restarts": {n: c.starts - 1 for n, c in clusters.items()},
            "exits": {n: dict(Counter(c.statuses)) for n, c in clusters.items()},
            "error_lines": {n: c.errors for n, c in clusters.items()},
            "second_instances": world.seconds_instances,
            "aborts": _aborts(clusters),
            "problems": problems + _unclean_logs(clusters),
        }
        recorder.close()
        registry_gate.close()
        for gate in storage_gates:
            gate.close()
        started.append(world.alertmanager)  # the one running now, after outages
        for cluster in clusters.values():
            cluster.close()
    finally:
        for server in reversed(started):
            server.stop()  # type: ignore[attr-defined]
    run["left_running"] = _left_running(work)
    (work / "run.json").write_text(json.dumps(run, indent=1))
    (work / "timeline.svg").write_text(timeline_svg(work))
    verdict = check(work)
    return verdict, verdict_line(run, verdict)


def verdict_line(run: dict, verdict: Verdict) -> str:
    faults = ", ".join(f"{k} {v}" for k, v in sorted(run["faults"].items()))
    restarts = ", ".join(f"{k} {v}" for k, v in run["restarts"].items())
    counts = verdict.counts
    head = "PASS" if not verdict.failures else f"FAIL ({len(verdict.failures)})"
    return (
        f"chaos seed {run['seed']}, {run['minutes']:g} min: {head}: "
        f"{counts.get('produced', 0):,} records produced ({counts.get('bad', 0)} bad, "
        f"{counts.get('late', 0)} late, {counts.get('far_future', 0)} far future); "
        f"faults: {faults} ({run['overlapping_faults']} overlapping pairs); "
        f"restarts: {restarts} (librdkafka aborts {run.get('aborts', 0)}); "
        f"rows checked {verdict.rows_checked:,}, "
        f"alert rows {counts.get('alerts', 0)}, Delta polls {counts.get('delta_polls', 0)}, "
        f"duplicates {verdict.duplicates}, losses {verdict.losses}; "
        f"dump {run['dump']}, output {run['output']}"
    )


def _env(
    kafka: KafkaSettings, storage: tuple[Gate, Gate], recorder: AlertRecorder, flow: str
) -> dict[str, str]:
    table_format, value_format = FLOWS[flow]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKSTREAM", "KAFKA"))}
    env.update(kafka.to_env())
    env.update(
        STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{storage[0].port}",
        STORAGE_EMULATOR_XML_HOST=f"http://127.0.0.1:{storage[1].port}",
        CLICKSTREAM_SOURCE="kafka",
        CLICKSTREAM_OUTPUT=f"gs://{BUCKET}/chaos/{flow}",
        CLICKSTREAM_TABLE_FORMAT=table_format,
        KAFKA_VALUE_FORMAT=value_format,
        CLICKSTREAM_LEASE_TIMEOUT=str(LEASE_TIMEOUT_S),
        CLICKSTREAM_PARTITION_DISCOVERY_INTERVAL="5",
        CLICKSTREAM_FLUSH_INTERVAL="2",
        CLICKSTREAM_MAX_FUTURE_SKEW=str(MAX_FUTURE_SKEW_S),
    )
    if flow == "clickstream":
        env.update(CLICKSTREAM_ALERTMANAGER_URL=recorder.url, CLICKSTREAM_ALERT_MAX_AGE="86400")
    return env


def _store(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(path), "4"], check=True)
    return path


def _tend(clusters: dict[str, Cluster], **env: str) -> bool:
    done = all([c.tend(**env) for c in clusters.values()])
    time.sleep(0.2)
    return done


def _drain(clusters: dict[str, Cluster]) -> None:
    """Stop each cluster, then run it to the end of its input once more: enrich first."""
    for cluster in clusters.values():
        cluster.terminate()
    for group in (["enrich"], ["clickstream", "user_clickstream"]):
        members = {n: clusters[n] for n in group}
        for cluster in members.values():
            cluster.start(KAFKA_STOP_AT_END="true")
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while not _tend(members, KAFKA_STOP_AT_END="true"):
            if time.monotonic() > deadline:
                raise ChaosFailure(f"{group} did not drain within {DRAIN_TIMEOUT_S:.0f} s")


def _dump(kafka: KafkaSettings, registry: schema_registry.Registry, dump: Path) -> None:
    """Every record of the run's topics, kcat -J style (payload in base64), and the
    registry's schemas by id."""
    dump.mkdir()
    consumer = Consumer(
        client_config(kafka, **{"group.id": "chaos-dump", "enable.auto.commit": False})
    )
    ids: set[int] = set()
    try:
        for topic in (kafka.clickstream_topic, kafka.users_topic, kafka.user_clickstream_topic):
            meta = consumer.list_topics(topic, timeout=30).topics[topic]
            with (dump / f"{topic}.jsonl").open("w") as out:
                for p in sorted(meta.partitions):
                    tp = TopicPartition(topic, p)
                    low, high = consumer.get_watermark_offsets(tp, timeout=30)
                    if high <= low:
                        continue
                    consumer.assign([TopicPartition(topic, p, low)])
                    offset = low
                    while offset < high:
                        msg = consumer.poll(10)
                        if msg is None:
                            raise ChaosFailure(f"dump: {topic}[{p}] stopped at {offset} of {high}")
                        if msg.error():
                            continue
                        value = msg.value()
                        if value and len(value) >= 5 and value[0] == 0:
                            ids.add(int.from_bytes(value[1:5], "big"))
                        key = msg.key()
                        # the headers name the writer of a USER_CLICKSTREAM record: its
                        # input (origin) and the lease token of the process that wrote it
                        headers = [
                            [name, raw.decode(errors="replace") if isinstance(raw, bytes) else raw]
                            for name, raw in list(msg.headers() or [])
                        ]
                        out.write(json.dumps({
                            "topic": topic, "partition": p, "offset": msg.offset(),
                            "ts": msg.timestamp()[1],
                            "key": None if key is None else key.decode(errors="replace"),
                            "payload": None if value is None else base64.b64encode(value).decode(),
                            "headers": headers,
                        }) + "\n")  # fmt: skip
                        offset = (msg.offset() or 0) + 1
    finally:
        consumer.close()
    schemas = {}
    for schema_id in sorted(ids):
        with urllib.request.urlopen(f"{registry.url}/schemas/ids/{schema_id}", timeout=30) as r:
            schemas[schema_id] = json.loads(r.read())["schema"]
    (dump / "schemas.json").write_text(json.dumps(schemas))


def _copy_output(gcs: GcsEmulator, output: Path) -> None:
    import gcsfs

    fs = gcsfs.GCSFileSystem(endpoint_url=gcs.url, token="anon")
    fs.get(f"{BUCKET}/chaos/", str(output) + "/", recursive=True)


def _poll_delta(work: Path, gcs: GcsEmulator, stop: threading.Event) -> None:
    """A reader of the Delta tables during the run: each version it reads, and how many
    of its rows were there twice."""
    import gcsfs
    import polars as pl
    from deltalake import DeltaTable

    from storage.location import delta_storage_options

    seen: set[tuple[str, int]] = set()
    while not stop.wait(5.0):
        for table in ("click_user_sessions", "user_ip_activity"):
            url = f"gs://{BUCKET}/chaos/user_clickstream/{table}"
            try:
                found = DeltaTable(url, storage_options=delta_storage_options(url))
                version = found.version()
                if (table, version) in seen:
                    continue
                fs = gcsfs.GCSFileSystem(endpoint_url=gcs.url, token="anon")
                frames = []
                for uri in found.file_uris():
                    with fs.open(uri.split("://", 1)[-1], "rb") as f:
                        frames.append(pl.read_parquet(f, hive_partitioning=False))
            except Exception:  # not written yet, or storage is down: poll again later
                continue
            seen.add((table, version))
            df = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
            duplicates = int(df.is_duplicated().sum()) // 2 if df.height else 0
            entry = {
                "table": table,
                "version": version,
                "rows": df.height,
                "duplicates": duplicates,
            }
            with (work / "delta-polls.jsonl").open("a") as out:
                out.write(json.dumps(entry) + "\n")


def _sample(work: Path, kafka: KafkaSettings, workload: Workload, stop: threading.Event) -> None:
    """Every 2 s: records produced, each dataflow's lag (end offsets minus the offsets
    its consumer group committed) and the records in USER_CLICKSTREAM, for the report's
    timeline and the checker."""
    began = time.monotonic()
    consumers = {
        flow: Consumer(client_config(kafka, **{"group.id": kafka.group(flow)})) for flow in FLOWS
    }
    topics = {
        "enrich": kafka.clickstream_topic,
        "clickstream": kafka.clickstream_topic,
        "user_clickstream": kafka.user_clickstream_topic,
    }
    try:
        while not stop.wait(2.0):
            entry: dict[str, object] = {
                "t": round(time.monotonic() - began, 1),
                "produced": workload.sent["click"],
            }
            for flow, consumer in consumers.items():
                try:
                    topic = topics[flow]
                    parts = consumer.list_topics(topic, timeout=2).topics[topic].partitions
                    tps = [TopicPartition(topic, p) for p in parts]
                    committed = consumer.committed(tps, timeout=2)
                    lag = written = 0
                    for tp in committed:
                        _, high = consumer.get_watermark_offsets(tp, timeout=2)
                        lag += high - max(tp.offset, 0)
                        written += high
                    entry[f"lag_{flow}"] = lag
                    if flow == "user_clickstream":
                        entry["joined"] = written  # what enrich wrote so far
                except Exception:  # the broker is down: no figure
                    entry[f"lag_{flow}"] = None
            with (work / "timeline.jsonl").open("a") as out:
                out.write(json.dumps(entry) + "\n")
    finally:
        for consumer in consumers.values():
            consumer.close()


def _aborts(clusters: dict[str, Cluster]) -> int:
    """Processes librdkafka aborted (SIGABRT) when the broker went away under an admin
    request (confluentinc/librdkafka#4605, not fixed in 2.16; docs/known-limits.md). The
    supervisor restarts them like any crash; the verdict counts them."""
    return sum(c.statuses.count(-6) for c in clusters.values())


def _unclean_logs(clusters: dict[str, Cluster]) -> list[str]:
    """A traceback or a panic in a log is a failure that was not said in one line."""
    found = []
    for cluster in clusters.values():
        text = cluster.log.read_text(errors="replace")
        for marker in ("Traceback", "panicked"):
            if marker in text:
                at = text.index(marker)
                found.append(
                    f"{cluster.name}: a {marker.lower()} in its log: {text[at : at + 300]!r}"
                )
    return found


def _left_running(work: Path) -> list[str]:
    """Processes started for this run still alive."""
    return [f"pid {pid}: {cmdline[:160]}" for pid, cmdline in _running_for(work)]


def _running_for(work: Path) -> list[tuple[int, str]]:
    """Processes started for this run (their command line or directory names its
    directory) alive."""
    found = []
    ours = _ancestors()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            cwd = os.readlink(entry / "cwd")  # the registry names its directory only so
        except OSError:
            continue
        if (str(work) in cmdline or cwd.startswith(str(work))) and state != "Z":
            found.append((int(entry.name), cmdline))
    return found


def _ancestors() -> set[int]:
    """This process and those that started it (their command lines may name the run)."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found
