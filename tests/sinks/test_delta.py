"""The Delta sink: one commit per flush with its app txn, the resume that takes back what
was committed after the snapshot, concurrent appends, the schema readers see, bad output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from datetime import datetime, timedelta

import polars as pl
import pytest
from deltalake import DeltaTable

from setting import Unreachable
from sinks.base import TableRows
from sinks.delta import DeltaSink, SinkState, delta_schema
from sinks.parquet import ParquetSink
from sql import output_tables
from storage.location import delta_storage_options
from storage.retries import is_transient
from storage.tables import DEAD_LETTERS, LATE_EVENTS
from tests.processes import ROOT, clean_env, run_flow
from tests.sinks.conftest import HOUR, T0, pages_rows
from tests.tables import read_rows
from tools.replay_gen import generate

PAGES_PER_MIN = next(t for t in output_tables() if t.name == "pages_per_min")


def _sink(tmp_path, parts: int = 1, flow: str = "flow") -> DeltaSink:
    sink = DeltaSink(str(tmp_path), flow, [PAGES_PER_MIN], parts=parts, flush_rows=1)
    sink.prepare()
    return sink


def _log(table_dir) -> list[list[dict]]:
    return [
        [json.loads(line) for line in entry.read_text().splitlines()]
        for entry in sorted((table_dir / "_delta_log").glob("*.json"))
    ]


def test_each_flush_is_one_commit_with_its_app_transaction(tmp_path):
    part = _sink(tmp_path).build_part("out", "0", None)
    part.write_batch([TableRows("pages_per_min", pages_rows(5) + pages_rows(2, start=T0 + HOUR))])
    part.write_batch([TableRows("pages_per_min", pages_rows(3, first=10))])
    part.close()
    commits = _log(tmp_path / "pages_per_min")[1:]  # version 0 creates the table
    assert [[a["txn"] for a in c if "txn" in a] for c in commits] == [
        [{"appId": "clickstream/flow/p0", "version": 0}],
        [{"appId": "clickstream/flow/p0", "version": 1}],
    ]
    adds = [[a["add"] for a in c if "add" in a] for c in commits]
    assert [len(a) for a in adds] == [2, 1]  # one file per hour partition
    first = adds[0][0]
    hour = int(pl.from_epoch(pl.Series([T0]), "ms").dt.hour()[0])
    assert first["partitionValues"]["event_hour"] == str(hour)
    stats = json.loads(first["stats"])
    assert stats["numRecords"] == 5
    assert stats["minValues"]["pages"] == 1 and stats["maxValues"]["pages"] == 5
    table = DeltaTable(str(tmp_path / "pages_per_min"))
    assert table.transaction_version("clickstream/flow/p0") == 1
    df = pl.read_delta(str(tmp_path / "pages_per_min"))
    assert df.height == 10
    assert df.schema["event_start"] == pl.Datetime("us", "UTC")
    assert df.schema["event_date"] == pl.Date and df.schema["event_hour"] == pl.Int32
    assert sorted(read_rows(tmp_path, "pages_per_min")) == sorted(
        pages_rows(5) + pages_rows(2, start=T0 + HOUR) + pages_rows(3, first=10)
    )


def test_resume_drops_replayed_rows_that_were_committed_after_the_snapshot(tmp_path):
    sink = _sink(tmp_path)
    part = sink.build_part("out", "0", None)
    part.write_batch([TableRows("pages_per_min", pages_rows(2))])
    state = part.snapshot()  # the last committed epoch: flush 0 done, next is 1
    part.write_batch([TableRows("pages_per_min", pages_rows(3, first=2))])
    part.write_batch([TableRows("pages_per_min", pages_rows(1, first=5))])  # then kill -9

    resumed = _sink(tmp_path).build_part("out", "0", state)
    assert resumed.seq == 3, "new flushes are numbered after the last committed one"
    # the replay produces the same rows again, in other batches, then new ones
    resumed.write_batch([TableRows("pages_per_min", pages_rows(2, first=2))])
    assert read_rows(tmp_path, "pages_per_min") and resumed.pending_rows == 0
    snap = resumed.snapshot()
    assert sum(n for _, n in SinkState._make(snap).taken["pages_per_min"]) == 2, "to be replayed"
    resumed.write_batch(
        [TableRows("pages_per_min", pages_rows(2, first=4) + pages_rows(2, first=6))]
    )
    resumed.close()
    got = Counter(read_rows(tmp_path, "pages_per_min"))
    assert got == Counter(pages_rows(8)), got
    assert DeltaTable(str(tmp_path / "pages_per_min")).transaction_version(resumed.app_id) == 3


def test_a_lease_token_commit_that_landed_but_timed_out_is_not_committed_again(
    tmp_path, monkeypatch
):
    """`just chaos` (seed 3): the storage answered the first commit of the lease token
    too late; the retry committed it again, delta-rs refused that as a concurrent
    transaction, and the process exited 2, as for a bad setting."""
    sink = _sink(tmp_path)
    monkeypatch.setattr("sinks.delta.fence", lambda: 6)  # this process holds token 6
    real = DeltaTable.create_write_transaction
    calls = []

    def lands_then_times_out(table, *args, **kwargs):
        real(table, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("operation timed out")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", lands_then_times_out)
    part = sink.build_part("out", "0", None)
    claims = [
        action["txn"]
        for entry in _log(tmp_path / "pages_per_min")
        for action in entry
        if "txn" in action and action["txn"]["appId"] == part.owner_id
    ]
    assert [c["version"] for c in claims] == [6], claims


def test_storage_that_stops_answering_while_the_tables_are_checked_is_exit_75(
    tmp_path, monkeypatch
):
    """`just chaos`: the emulator went away between the location's check and the tables'
    (a traceback then); it is one line, and a supervisor starts the run again."""

    def refused(*_args, **_kwargs):
        raise OSError("Generic GCS error: tcp connect error: Connection refused (os error 111)")

    monkeypatch.setattr(DeltaTable, "is_deltatable", refused)
    with pytest.raises(Unreachable, match=r"CLICKSTREAM_OUTPUT .*Connection refused"):
        DeltaSink(str(tmp_path), "flow", [PAGES_PER_MIN]).check()


def test_a_delta_commit_conflict_is_retried_not_a_bad_setting():
    from deltalake.exceptions import CommitFailedError

    conflict = CommitFailedError("Failed to commit transaction: Concurrent transaction failed.")
    assert is_transient(conflict)


def test_run_without_recovery_state_over_its_own_output_adds_nothing_twice(tmp_path):
    part = _sink(tmp_path).build_part("out", "0", None)
    part.write_batch([TableRows("pages_per_min", pages_rows(4))])
    part.close()
    version = DeltaTable(str(tmp_path / "pages_per_min")).version()
    again = _sink(tmp_path).build_part("out", "0", None)
    again.write_batch([TableRows("pages_per_min", pages_rows(4))])
    again.close()
    assert DeltaTable(str(tmp_path / "pages_per_min")).version() == version
    assert Counter(read_rows(tmp_path, "pages_per_min")) == Counter(pages_rows(4))


_APPEND = """
import sys
from setting import Unreachable
from sinks.base import TableRows
from sinks.delta import DeltaSink, delta_schema
from storage.location import delta_storage_options
from storage.retries import is_transient
from storage.tables import LATE_EVENTS

flow = sys.argv[2]
sink = DeltaSink(sys.argv[1], flow, [LATE_EVENTS], parts=1, flush_rows=1)
part = sink.build_part("out", "0", None)
for i in range(int(sys.argv[3])):
    row = (flow, "t", str(i), 1_700_000_000_000 + i, 0, 1, 1, "late", "c", 0, i)
    part.write_batch([TableRows("late_events", [row])])
part.close()
"""


def _concurrent_appends(output: str, env: dict[str, str], flushes: int) -> None:
    DeltaSink(output, "setup", [LATE_EVENTS]).prepare()
    flows = ["a", "b", "c"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _APPEND, output, flow, str(flushes)],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
        )
        for flow in flows
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()[-2000:]
    rows = read_rows(output, "late_events")
    assert len(rows) == len(set(rows)) == len(flows) * flushes
    uri = f"{output}/late_events"
    table = DeltaTable(uri, storage_options=delta_storage_options(uri))
    assert table.version() == len(flows) * flushes, "one log version per commit, none lost"
    for flow in flows:
        assert table.transaction_version(f"clickstream/{flow}/p0") == flushes - 1


def test_concurrent_appends_from_several_processes_all_land_once(tmp_path):
    _concurrent_appends(str(tmp_path), clean_env(), flushes=20)


def test_concurrent_appends_and_maintain_on_the_gcs_emulator(gcs):
    env = clean_env(STORAGE_EMULATOR_HOST=gcs.url, STORAGE_EMULATOR_XML_HOST=gcs.xml_url)
    _concurrent_appends("gs://clickstream/delta", env, flushes=8)
    before = Counter(read_rows("gs://clickstream/delta", "late_events"))
    maintain = subprocess.run(
        [sys.executable, "-m", "tools.maintain", "gs://clickstream/delta"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert maintain.returncode == 0, maintain.stdout + maintain.stderr
    assert re.search(r"late_events: compacted \d+ files.* -> 1 files", maintain.stdout)
    assert "late_events: checkpoint at version" in maintain.stdout
    assert Counter(read_rows("gs://clickstream/delta", "late_events")) == before


def test_emulator_proxy_refuses_a_second_put_if_absent_and_answers_an_etag(gcs):
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(gcs.xml_url)
    answers = []
    for body in (b"first", b"second"):
        conn = http.client.HTTPConnection(where.hostname, where.port)
        conn.request(
            "PUT",
            "/clickstream/log%2F00001.json",
            body=body,
            headers={"x-goog-if-generation-match": "0"},
        )
        answer = conn.getresponse()
        answer.read()
        answers.append((answer.status, answer.getheader("ETag")))
    assert answers[0][0] == 200 and answers[0][1]
    assert answers[1] == (412, None)
    with urllib.request.urlopen(f"{gcs.url}/clickstream/log%2F00001.json") as stored:
        assert stored.read() == b"first"


@pytest.mark.parametrize(
    ("first", "then", "message"),
    [
        ("parquet", "delta", "holds files but is not a Delta table"),
        ("delta", "parquet", "is a Delta table; set CLICKSTREAM_TABLE_FORMAT=delta"),
    ],
)
def test_output_of_the_other_format_is_one_line_at_start(tmp_path, first, then, message):
    dump = tmp_path / "dump"
    generate(dump, events=500, rate=20, partitions=1, jitter_ms=0, seed=3)
    env = {"CLICKSTREAM_SOURCE": f"replay:{dump}", "CLICKSTREAM_OUTPUT": str(tmp_path / "out")}
    assert run_flow({**env, "CLICKSTREAM_TABLE_FORMAT": first}).returncode == 0
    before = sorted(p for p in (tmp_path / "out").rglob("*"))
    proc = run_flow({**env, "CLICKSTREAM_TABLE_FORMAT": then})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert sorted(p for p in (tmp_path / "out").rglob("*")) == before, "nothing written"


def test_delta_table_with_other_columns_is_one_line_at_start(tmp_path):
    other = pl.DataFrame({"userid": [1], "note": ["x"]})
    other.write_delta(str(tmp_path / "out" / "pages_per_min"))
    dump = tmp_path / "dump"
    generate(dump, events=200, rate=20, partitions=1, jitter_ms=0, seed=3)
    before = sorted(p for p in (tmp_path / "out").rglob("*"))
    proc = run_flow(
        {
            "CLICKSTREAM_SOURCE": f"replay:{dump}",
            "CLICKSTREAM_OUTPUT": str(tmp_path / "out"),
            "CLICKSTREAM_TABLE_FORMAT": "delta",
        }
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "is a Delta table with other columns (userid long, note string)" in lines[0]
    assert sorted(p for p in (tmp_path / "out").rglob("*")) == before, "nothing written"


def test_every_table_has_the_same_columns_and_types_in_both_formats(tmp_path):
    for table in output_tables():
        rows = [
            tuple(
                T0
                if name in table.timestamps
                else (b"x" if kind == "Binary" else 1)
                if kind != "String"
                else "s"
                for name, kind in table.columns
            )
        ]
        for fmt, sink_class in (("parquet", ParquetSink), ("delta", DeltaSink)):
            sink = sink_class(str(tmp_path / fmt), "flow", [table], parts=1)
            sink.prepare()
            part = sink.build_part("out", "0", None)
            part.write_batch([TableRows(table.name, rows)])
            part.close()
        parquet = read_rows(tmp_path / "parquet", table.name)
        assert read_rows(tmp_path / "delta", table.name) == parquet == rows, table.name
    schema = DeltaTable(str(tmp_path / "delta" / DEAD_LETTERS.name)).schema()
    types = {f.name: str(f.type) for f in schema.fields}
    assert types["ts"] == 'PrimitiveType("timestamp")', types
    assert types["payload"] == 'PrimitiveType("binary")', types


_PREPARE_TOGETHER = """
import sys, time
from pathlib import Path
from sinks.delta import DeltaSink
from sql import output_tables

root, me, processes, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for round_ in range(rounds):
    # a barrier in files: every process starts each round together
    (root / f"ready-{round_}-{me}").touch()
    deadline = time.monotonic() + 30
    while len(list(root.glob(f"ready-{round_}-*"))) < processes:
        if time.monotonic() > deadline:
            sys.exit(f"round {round_}: another process never came")
        time.sleep(0.001)
    DeltaSink(str(root / str(round_)), "flow", output_tables()).prepare()
"""


def test_processes_of_a_cluster_create_the_tables_at_the_same_moment(tmp_path):
    # Before the fix, 2 rounds in 10 failed: a process saw another's half-created log as
    # "holds files but is not a Delta table".
    processes, rounds = 4, 10
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PREPARE_TOGETHER, str(tmp_path), str(i), "4", str(rounds)],
            cwd=ROOT,
            env=clean_env(),
            stderr=subprocess.PIPE,
        )
        for i in range(processes)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    for round_ in range(rounds):
        for table in output_tables():
            found = DeltaTable(f"{tmp_path}/{round_}/{table.name}").schema()
            assert found.fields == delta_schema(table).fields


def test_sink_compacts_closed_hours_itself_when_asked(tmp_path):
    from bytewax.testing import run_main

    import dataflows.clickstream
    from config import Settings

    dump = tmp_path / "dump"
    midnight = 1_699_920_000_000  # 2023-11-14 00:00 UTC: hours 0 to 3 of one day
    generate(dump, events=12_000, rate=1, partitions=2, jitter_ms=5_000, seed=8, start_ms=midnight)
    outputs = {}
    for name, compact in (("plain", False), ("compacted", True)):
        outputs[name] = tmp_path / name
        run_main(
            dataflows.clickstream.build(
                Settings(
                    source="replay",
                    replay_path=dump,
                    output=str(outputs[name]),
                    table_format="delta",
                    batch_size=100,
                    flush_rows=50,  # many small files
                    delta_compact_closed_hours=compact,
                )
            )
        )
    files = {}
    for name, output in outputs.items():
        adds = DeltaTable(str(output / "pages_per_min")).get_add_actions(flatten=True)
        dates = adds.column("partition.event_date").to_pylist()
        hours = adds.column("partition.event_hour").to_pylist()
        files[name] = Counter(
            datetime.combine(d, datetime.min.time()) + timedelta(hours=h)
            for d, h in zip(dates, hours, strict=True)
        )
    assert len(files["plain"]) >= 4, "the data should span several hours"
    newest = max(files["plain"])
    for hour, n in files["compacted"].items():
        if newest - hour >= timedelta(hours=2):
            assert n == 1 < files["plain"][hour], (hour, files)
        else:
            assert n > 1, (hour, files)  # still open: left alone
    for table in ("pages_per_min", "errors_per_min_alert"):
        assert Counter(read_rows(outputs["compacted"], table)) == Counter(
            read_rows(outputs["plain"], table)
        )


def test_resume_whose_committed_files_were_vacuumed_is_one_clear_failure(tmp_path):
    from sinks.delta import _DeltaPartition
    from storage.retries import StorageFailure

    sink = _sink(tmp_path)
    part = sink.build_part("out", "0", None)
    part.write_batch([TableRows("pages_per_min", pages_rows(3))])
    for f in (tmp_path / "pages_per_min").rglob("*.parquet"):
        f.unlink()  # as a vacuum with a too short retention would
    with pytest.raises(StorageFailure, match="a file committed after the last snapshot is gone"):
        _DeltaPartition(sink, 0, None)
