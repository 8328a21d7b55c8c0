"""Exactly once across crashes: kill -9 a recovery-enabled run again and again, resume
it with the same recovery directory (and other worker counts), and compare the final
tables with an uninterrupted run, row for row. On local output, on GCS, and on Kafka."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.processes import (
    FINISH_FAST,
    ROOT,
    SLOW_RUN,
    clean_env,
    committed_epoch,
    error_lines,
    new_store,
    start_flow,
    wait_for,
)
from tests.shared import built_once, paced_clicks
from tests.tables import assert_same_tables, read_rows, reference_run
from tests.topics import read_topic

if TYPE_CHECKING:
    from kafka_client.settings import KafkaSettings


@pytest.fixture(scope="session")
def big_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = partial(paced_clicks, events=600_000, seed=99)
    return built_once(tmp_path_factory, "big_dump", build)


@pytest.fixture(scope="session")
def big_reference(big_dump: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clickstream tables of `big_dump` by one uninterrupted run, made once."""
    return built_once(tmp_path_factory, "big_reference", partial(reference_run, big_dump))


def crash_and_resume(
    env: dict[str, str],
    recovery: Path,
    log: Path,
    kills: int = 6,
    seed: int = 0,
    flow: str = "clickstream",
    during_flush: bool = True,
    flush_marker: str = "writing flush",
    alongside: Callable[[int], subprocess.Popen | None] | None = None,
    finish_env: dict[str, str] | None = None,
    layouts: tuple[str, ...] = ("1 worker", "-w 2", "2 processes"),
) -> list[str]:
    """Kill -9 the run `kills` times (if `during_flush`, every other time just after
    `flush_marker` is logged: in the middle of a flush), resuming each time with a
    different layout (in turn from `layouts`: the first one writes the store, so a replay
    keeps its parts); then let it finish, with `finish_env` over `env` (a batch size
    changed at a resume changes no table). `alongside(i)` may start a process that runs
    during run `i` and is killed with it. Returns what happened."""
    rng = random.Random(seed)
    recovery.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "4"], check=True)
    story = []
    for i in range(kills):
        layout = layouts[i % len(layouts)]
        mark = log.stat().st_size if log.exists() else 0
        procs = start_flow(env, layout, log, flow, recovery)
        helper = alongside(i) if alongside else None
        if i % 2 and during_flush:
            # wait until a flush starts, then kill while files are being written
            deadline = time.monotonic() + 60
            while flush_marker not in log.read_text()[mark:]:
                assert time.monotonic() < deadline, "no flush started"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.1))
            moment = "during a flush"
        else:
            # once this run has committed an epoch of its own (startup takes about 1 s,
            # more on a loaded machine), so that the next run resumes mid-input
            start = committed_epoch(recovery)
            deadline = time.monotonic() + 60
            while committed_epoch(recovery) <= start:
                assert time.monotonic() < deadline, "no epoch committed"
                time.sleep(0.05)
            time.sleep(rng.uniform(1.0, 3.0))
            moment = "at a random moment"
        assert all(p.poll() is None for p in procs), (
            f"run {i} ended before it could be killed:\n{log.read_text()[mark:][-2000:]}"
        )
        assert helper is None or helper.poll() is None, "the helper should still be running"
        for p in procs if helper is None else [*procs, helper]:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        story.append(f"killed {layout} {moment}" + (" and maintain" if helper else ""))
    procs = start_flow({**env, **(finish_env or {})}, "1 worker", log, flow, recovery)
    for p in procs:
        assert p.wait(timeout=600) == 0, log.read_text()[-3000:]
    return story


@pytest.mark.slow
def test_kill_9_and_resume_is_exactly_once_on_local_output(big_dump, big_reference, tmp_path):
    out = tmp_path / "out"
    env = clean_env(
        CLICKSTREAM_SOURCE=f"replay:{big_dump}", CLICKSTREAM_OUTPUT=str(out), **SLOW_RUN
    )
    # a 2-process cluster writes the store: the replay is read as 2 parts, which every
    # later layout resumes (1 worker, -w 2)
    story = crash_and_resume(
        env,
        tmp_path / "recovery",
        tmp_path / "run.log",
        seed=1,
        finish_env=FINISH_FAST,
        layouts=("2 processes", "1 worker", "-w 2"),
    )
    assert len(story) >= 5 and sum("during a flush" in s for s in story) >= 2
    assert_same_tables(out, big_reference)
    log = (tmp_path / "run.log").read_text()
    assert log.count("(replay 2/2): resuming at line") >= 3, "restarts resume both parts"
    assert "removed" in log, "a resume should clean up what the killed run wrote"
    assert not [p for p in out.rglob(".*.tmp")], "no half-written files left behind"


class _PollingReader(threading.Thread):
    """Reads a Delta table again and again while the test runs: every version it sees
    must hold no duplicate row and every row of the versions seen before."""

    def __init__(self, output: Path, table: str) -> None:
        super().__init__(daemon=True)
        self.output, self.table = output, table
        self.stopped = threading.Event()
        self.reads = 0
        self.versions: set[int] = set()
        self.problems: list[str] = []

    def run(self) -> None:
        from deltalake import DeltaTable

        uri = str(self.output / self.table)
        seen: Counter = Counter()
        while not self.stopped.is_set():
            try:
                table = DeltaTable(uri)
            except Exception:  # not created yet
                time.sleep(0.05)
                continue
            rows = Counter(read_rows(self.output, self.table, version=table.version()))
            self.reads += 1
            self.versions.add(table.version())
            duplicated = sum(n - 1 for n in rows.values() if n > 1)
            if duplicated:
                self.problems.append(f"version {table.version()}: {duplicated} duplicates")
            gone = sum((seen - rows).values())
            if gone:
                self.problems.append(f"version {table.version()}: {gone} rows disappeared")
            seen = rows


@pytest.mark.slow
def test_kill_9_on_delta_mid_commit_and_during_maintain(big_dump, big_reference, tmp_path):
    out = tmp_path / "out"
    env = clean_env(
        CLICKSTREAM_SOURCE=f"replay:{big_dump}",
        CLICKSTREAM_OUTPUT=str(out),
        CLICKSTREAM_TABLE_FORMAT="delta",
        **SLOW_RUN,
    )
    maintain_log = (tmp_path / "maintain.log").open("a")

    def maintain(i: int) -> subprocess.Popen | None:
        """From the third run on, every third: maintenance passes back to back, so the
        kill lands in the middle of one; returns once the first pass is done."""
        if i % 3 != 2:
            return None
        log = tmp_path / "maintain.log"
        mark = log.stat().st_size if log.exists() else 0
        every = ["--retention-hours", "1", "--every", "0"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.maintain", str(out), *every],
            cwd=ROOT,
            env=env,
            stdout=maintain_log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while "dead_letters: checkpoint" not in log.read_text()[mark:]:
            assert proc.poll() is None, log.read_text()[mark:]
            assert time.monotonic() < deadline, "no maintenance pass finished"
            time.sleep(0.05)
        return proc

    reader = _PollingReader(out, "pages_per_min")
    reader.start()
    try:
        story = crash_and_resume(
            env,
            tmp_path / "recovery",
            tmp_path / "run.log",
            kills=6,
            seed=7,
            flush_marker="committing flush",
            alongside=maintain,
        )
        # and once more after the last run, to its end
        finish = subprocess.run(
            [sys.executable, "-m", "tools.maintain", str(out), "--retention-hours", "1"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert finish.returncode == 0, finish.stderr
    finally:
        reader.stopped.set()
        reader.join()
    assert len(story) >= 5 and sum("during a flush" in s for s in story) >= 2, story
    assert sum("maintain" in s for s in story) >= 2, story
    assert_same_tables(out, big_reference)
    log = (tmp_path / "run.log").read_text()
    assert "committed after the last snapshot" in log, "no resume met its own commits"
    passes = (tmp_path / "maintain.log").read_text().count("pages_per_min: checkpoint")
    assert passes >= 4, f"{passes} maintenance passes"
    assert reader.reads >= 20 and len(reader.versions) >= 10, (reader.reads, reader.versions)
    assert not reader.problems, reader.problems[:5]


@pytest.mark.slow
@pytest.mark.parametrize("table_format", ["parquet", "delta"])
def test_kill_9_and_resume_is_exactly_once_on_gcs(
    big_dump, big_reference, tmp_path, gcs, table_format
):
    env = clean_env(
        CLICKSTREAM_SOURCE=f"replay:{big_dump}",
        CLICKSTREAM_OUTPUT="gs://clickstream/tables",
        CLICKSTREAM_TABLE_FORMAT=table_format,
        STORAGE_EMULATOR_HOST=gcs.url,
        STORAGE_EMULATOR_XML_HOST=gcs.xml_url,
        **SLOW_RUN,
    )
    # Delta commits through the emulator's proxy take about 0.3 s each: fewer flushes
    # and kills, or the run is mostly waiting for commits
    kills = 6 if table_format == "parquet" else 4
    if table_format == "delta":
        env["CLICKSTREAM_FLUSH_INTERVAL"] = "1"
    story = crash_and_resume(
        env, tmp_path / "recovery", tmp_path / "run.log", kills, seed=2, finish_env=FINISH_FAST
    )
    assert len(story) == kills
    assert_same_tables("gs://clickstream/tables", big_reference)


@pytest.mark.slow
def test_kill_9_and_resume_is_exactly_once_on_kafka(
    big_dump, big_reference, tmp_path, kafka_bootstrap, topic_name
):
    from kafka_client.settings import KafkaSettings
    from tools.produce import create_topics, produce_dump

    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, clickstream_topic=topic_name, stop_at_end=True
    )
    create_topics(kafka, {topic_name: {}}, 3)
    produce_dump(kafka, big_dump / "clickstream.jsonl", topic_name)
    out = tmp_path / "out"
    env = clean_env(
        CLICKSTREAM_SOURCE="kafka",
        **kafka.to_env(),
        CLICKSTREAM_OUTPUT=str(out),
        **SLOW_RUN,
    )
    story = crash_and_resume(
        env, tmp_path / "recovery", tmp_path / "run.log", seed=3, finish_env=FINISH_FAST
    )
    assert len(story) >= 5
    # the uninterrupted run is a replay of the same records: Kafka and replay agree
    assert_same_tables(out, big_reference, ignore_topic=True)


def _enrich_and_reference(
    bootstrap: str, topic_name: str, tmp_path: Path, output: str, clicks: int, seed: int
) -> tuple[KafkaSettings, KafkaSettings, int]:
    """New clicks and users topics (4 partitions) with `clicks` datagen clicks; the Kafka
    settings of an `enrich` that writes to `<topic_name>-<output>`, and of an
    uninterrupted run already made to `<topic_name>-reference`; the clicks produced."""
    from bytewax.testing import run_main

    import dataflows.enrich
    from config import Settings
    from kafka_client.settings import KafkaSettings
    from tools.produce import create_topics, produce_datagen

    def kafka(to: str) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=bootstrap,
            stop_at_end=True,
            clickstream_topic=f"{topic_name}-clicks",
            users_topic=f"{topic_name}-users",
            user_clickstream_topic=f"{topic_name}-{to}",
        )

    tested, reference = kafka(output), kafka("reference")
    produced = produce_datagen(tested, 50_000, clicks, None, 4, seed=seed, progress=False)
    create_topics(reference, {reference.user_clickstream_topic: {}}, 4)
    run_main(
        dataflows.enrich.build(
            Settings(source="kafka", kafka=reference, output=str(tmp_path / "ref"))
        )
    )
    return tested, reference, produced


@pytest.mark.slow
def test_kill_9_and_resume_enrich_writes_each_click_once(kafka_bootstrap, tmp_path, topic_name):
    from tools.produce import total_records

    crashed, reference, clicks = _enrich_and_reference(
        kafka_bootstrap, topic_name, tmp_path, "crashed", clicks=20_000, seed=4
    )
    env = clean_env(
        CLICKSTREAM_SOURCE="kafka",
        **crashed.to_env(),
        CLICKSTREAM_OUTPUT=str(tmp_path / "out"),
        # slow enough to be killed a few times: at most 1,000 records a second
        CLICKSTREAM_BATCH_SIZE="10",
        CLICKSTREAM_TEST_SLOW_WRITES="0.001",
    )
    log = tmp_path / "run.log"
    story = crash_and_resume(
        env,
        tmp_path / "recovery",
        log,
        kills=4,
        seed=5,
        flow="enrich",
        during_flush=False,
        finish_env=FINISH_FAST,
    )
    assert len(story) == 4
    text = log.read_text()
    assert "will not be written again" in text, "no restart met its own output"
    got = _enriched(kafka_bootstrap, crashed.user_clickstream_topic)
    want = _enriched(kafka_bootstrap, reference.user_clickstream_topic)
    assert len(want) == clicks == total_records(reference, reference.clickstream_topic)
    origins = Counter(origin for *_, origin in got)
    assert not [o for o, n in origins.items() if n > 1], "a click was written twice"
    assert Counter(got) == Counter(want)


def _enriched(bootstrap: str, topic: str) -> list[tuple]:
    """(key, value, timestamp, origin header) of every record of `topic`."""
    return [
        (r.key, r.value, r.timestamp_ms, r.headers["origin"]) for r in read_topic(bootstrap, topic)
    ]


@pytest.mark.slow
def test_a_paused_enrich_woken_after_a_takeover_writes_no_click_twice(
    kafka_bootstrap, tmp_path, topic_name
):
    """librdkafka sends what it had queued as soon as a paused process wakes, before any
    of its Python runs (chaos bug 9): those records must expire instead of landing after
    the replacement read the topic back and wrote the same clicks."""
    paused, reference, _ = _enrich_and_reference(
        kafka_bootstrap, topic_name, tmp_path, "paused", clicks=25_000, seed=6
    )
    # A long linger keeps records queued in librdkafka most of the time between
    # snapshots, so the pause below finds some there, as a busy enrich's would.
    props = tmp_path / "client.properties"
    props.write_text("linger.ms=1000\n")
    env = clean_env(
        CLICKSTREAM_SOURCE="kafka",
        **paused.to_env(),
        KAFKA_CONFIG_FILE=str(props),
        CLICKSTREAM_OUTPUT=str(tmp_path / "out"),
        CLICKSTREAM_LEASE_TIMEOUT="10",
        CLICKSTREAM_BATCH_SIZE="10",
        # at most 2,000 records a second: the run lasts long enough to be paused mid-way
        CLICKSTREAM_TEST_SLOW_READS="0.0005",
    )
    recovery = new_store(tmp_path / "recovery")
    out_topic = paused.user_clickstream_topic
    (zombie,) = start_flow(env, "1 worker", tmp_path / "zombie.log", "enrich", recovery)
    wait_for("a committed epoch", lambda: committed_epoch(recovery) >= 1, timeout=120)
    wait_for("written clicks", lambda: len(read_topic(kafka_bootstrap, out_topic)) > 0)
    time.sleep(random.Random(6).uniform(0.5, 1.5))  # anywhere between two snapshots
    zombie.send_signal(signal.SIGSTOP)
    try:
        time.sleep(12)  # past the 10 s lease timeout
        unpaced = {**env, "CLICKSTREAM_TEST_SLOW_READS": "0"}
        (replacement,) = start_flow(
            unpaced, "1 worker", tmp_path / "replacement.log", "enrich", recovery
        )
        assert replacement.wait(timeout=300) == 0, (tmp_path / "replacement.log").read_text()
        mark = (tmp_path / "zombie.log").stat().st_size
    finally:
        zombie.send_signal(signal.SIGCONT)

    assert zombie.wait(timeout=60) == 2
    (line,) = error_lines((tmp_path / "zombie.log").read_text()[mark:])
    assert "lost its lease" in line and f"pid {replacement.pid}" in line, line
    got = read_topic(kafka_bootstrap, out_topic)
    twice = [o for o, n in Counter(r.headers["origin"] for r in got).items() if n > 1]
    tokens = Counter(r.headers["lease-token"] for r in got)
    assert not twice, f"{len(twice)} clicks written twice; records by lease token: {tokens}"
    want = _enriched(kafka_bootstrap, reference.user_clickstream_topic)
    assert Counter(_enriched(kafka_bootstrap, out_topic)) == Counter(want)
