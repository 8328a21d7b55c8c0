"""The chaos run's independent checker: what was produced (the run's dump of every topic)
against what was written (the run's copy of every output) and what Alertmanager accepted.

    python -m tools.chaos.checker RUN_DIR        # prints the verdict; exit 1 on a failure

It shares nothing with the product's operators, parsers or readers: windows, sessions and
lateness are computed here in batch, the obvious way, by Spark's rules (sliding windows
hold every event with start <= ts < start + length; sessions merge events at most a gap
apart, end = last + gap; an aggregate of a window or session counts each event once), over
every valid event that is not late. The workload makes the classification plain:

- a clicks record is valid when it is an Avro record in Confluent's framing; the workload
  writes nothing else but its bad ones;
- far in the future: stamped more than 10 minutes after the record before it in its
  partition (the workload's are 55 minutes ahead; the run's limit is 5 minutes);
- late: stamped more than a minute before the run began (the workload's are 10 minutes
  before; every table's window and session closes within a minute).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
import polars as pl

S = 1000
FAR_FUTURE_MS = 600_000
LATE_MS = 60_000
# fault-free time enrich may take to catch up (restart back-off, a cold start, the backlog)
STALL_S = 120.0
Row = tuple[Any, ...]


@dataclass
class Record:
    partition: int
    offset: int
    ts: int
    key: bytes | None
    value: dict[str, Any] | None  # an Avro record, or a JSON object (`plain`)
    plain: bool = False  # not in Confluent's framing: a JSON object, or nothing readable
    headers: dict[str, str] = field(default_factory=dict)  # origin, lease-token (the writer)


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)
    rows_checked: int = 0
    duplicates: int = 0
    losses: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def fail(self, what: str) -> None:
        self.failures.append(what)


@dataclass(frozen=True)
class Spec:
    """A window table: its events' key and filter, its windows (`slide` 0: sessions of
    gap `length`), its watermark delay, rows kept when the count is above `above`, and
    the output columns of the key, start, end and count."""

    name: str
    key: Callable[[dict[str, Any]], Any]
    where: Callable[[dict[str, Any]], bool]
    length: int
    slide: int
    delay: int
    above: int
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Late:
    watermark: int
    missed: int
    total: int


def load_topic(dump: Path, topic: str) -> list[Record]:
    """A topic's records from the run's dump, values decoded with the schemas it saved
    (Avro) or as JSON."""
    schemas = {
        int(k): fastavro.parse_schema(json.loads(v))
        for k, v in json.loads((dump / "schemas.json").read_text()).items()
    }
    out = []
    for line in (dump / f"{topic}.jsonl").read_text().splitlines():
        env = json.loads(line)
        payload = base64.b64decode(env["payload"]) if env["payload"] is not None else None
        key = None if env["key"] is None else env["key"].encode()
        framed = payload is not None and len(payload) >= 5 and payload[0] == 0
        value = _avro(payload, schemas) if framed else _json_object(payload)
        headers = {name: raw for name, raw in env.get("headers") or [] if isinstance(raw, str)}
        out.append(
            Record(env["partition"], env["offset"], env["ts"], key, value, not framed, headers)
        )
    return out


def _avro(payload: bytes | None, schemas: dict[int, Any]) -> dict[str, Any] | None:
    assert payload is not None
    (schema_id,) = struct.unpack(">I", payload[1:5])
    if schema_id not in schemas:
        return None
    try:
        value = fastavro.schemaless_reader(io.BytesIO(payload[5:]), schemas[schema_id], None)
    except Exception:
        return None
    return value if isinstance(value, dict) else None


def _json_object(payload: bytes | None) -> dict[str, Any] | None:
    try:
        value = json.loads(payload or b"")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def as_int(value: Any) -> int | None:
    """Spark's CAST to INT of a JSON field: a number, or a string of one; else null."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def windows(spec: Spec, ts: int) -> list[tuple[int, int]]:
    """Every window of a sliding (or tumbling) table that holds `ts`, oldest first."""
    start = ts - ts % spec.slide
    found = []
    while start > ts - spec.length:
        found.append((start, start + spec.length))
        start -= spec.slide
    return found[::-1]


def expected(
    verdict: Verdict,
    spec: Spec,
    records: list[Record],
    late: dict[tuple[int, int], Late],
) -> Counter[Row]:
    """The rows of `spec` over `records`, each counted in its windows that were still
    open when it was read: all of them unless the product recorded it as late. A late
    record's claim is checked: the windows it says it missed are exactly those the
    watermark it names had closed, and that watermark is no later than the records allow
    (the newest event time of the topic, less the delay)."""
    newest = max((r.ts for r in records), default=0)
    counts: Counter[tuple[Any, int, int]] = Counter()
    by_key: dict[Any, list[int]] = defaultdict(list)
    seen_late = set()
    for r in records:
        assert r.value is not None
        if not spec.where(r.value):
            continue
        key = spec.key(r.value)
        claim = late.get((r.partition, r.offset))
        if claim is not None:
            seen_late.add((r.partition, r.offset))
            if claim.watermark > newest - spec.delay:
                verdict.fail(
                    f"{spec.name}: record {r.partition}/{r.offset} judged late by watermark "
                    f"{claim.watermark}, past the newest event time less the delay"
                )
        if spec.slide == 0:  # sessions: a late event is one whose session had closed
            if claim is not None:
                if r.ts + spec.length > claim.watermark:
                    verdict.fail(f"{spec.name}: record {r.partition}/{r.offset} judged late "
                                 "while its session could still be open")  # fmt: skip
                continue
            by_key[key].append(r.ts)
            continue
        held = windows(spec, r.ts)
        if claim is not None:
            closed = [w for w in held if w[1] <= claim.watermark]
            if (len(closed), len(held)) != (claim.missed, claim.total):
                verdict.fail(f"{spec.name}: record {r.partition}/{r.offset} said it missed "
                             f"{claim.missed} of {claim.total} windows; its watermark closed "
                             f"{len(closed)} of {len(held)}")  # fmt: skip
            held = held[len(closed) :]
        for start, end in held:
            counts[(key, start, end)] += 1
    for p, o in set(late) - seen_late:
        verdict.fail(f"{spec.name}: late_events names {p}/{o}, which is no event of this table")
    if spec.slide == 0:
        counts = sessions(by_key, spec.length)
    return Counter(
        {_flat(key, start, end, n): 1 for (key, start, end), n in counts.items() if n > spec.above}
    )


def _flat(key: Any, start: int, end: int, n: int) -> Row:
    return (*key, start, end, n) if isinstance(key, tuple) else (key, start, end, n)


def sessions(by_key: dict[Any, list[int]], gap: int) -> Counter[tuple[Any, int, int]]:
    """(key, start, end) -> count of each session: events at most `gap` apart, end =
    last + gap."""
    out: Counter[tuple[Any, int, int]] = Counter()
    for key, times in by_key.items():
        times.sort()
        first = last = times[0]
        n = 0
        for ts in times:
            if ts > last + gap:
                out[(key, first, last + gap)] = n
                first, n = ts, 0
            last = ts
            n += 1
        out[(key, first, last + gap)] = n
    return out


def read_output(output: Path, table: str) -> pl.DataFrame | None:
    """A table's rows from the run's local copy of an output: the files of a Delta table's
    current version, or every Parquet file of a directory; timestamps as epoch ms."""
    base = output / table
    if not base.exists():
        return None
    if (base / "_delta_log").exists():
        from deltalake import DeltaTable

        files = [u.split("://", 1)[-1] for u in DeltaTable(str(base)).file_uris()]
    else:
        files = [str(f) for f in base.rglob("*.parquet") if "/." not in str(f)]
    if not files:
        return None
    df = pl.concat(
        [pl.read_parquet(f, hive_partitioning=False) for f in sorted(files)],
        how="vertical_relaxed",
    )
    return df.with_columns(pl.col(pl.Datetime).dt.epoch("ms"))


def compare(
    verdict: Verdict,
    what: str,
    want: Counter[Row],
    got_rows: list[Row],
    *,
    alike: bool = False,
) -> None:
    """`got_rows` against `want`. A table's rows are unique (a window, a key); with
    `alike`, records may be equal without being the same (two clicks of one user alike
    to the millisecond), and only the copies beyond those wanted are written twice."""
    got = Counter(got_rows)
    verdict.rows_checked += len(got_rows)
    once = {r: max(1, want[r]) if alike else 1 for r in got}
    doubled = {r: n - once[r] for r, n in got.items() if n > once[r]}
    if doubled:
        verdict.duplicates += sum(doubled.values())
        verdict.fail(f"{what}: {len(doubled)} rows written twice, e.g. {next(iter(doubled))}")
    got = Counter({r: min(n, once[r]) for r, n in got.items()})
    missing, extra = want - got, got - want
    if missing:
        verdict.losses += sum(missing.values())
        verdict.fail(f"{what}: {sum(missing.values())} rows missing, e.g. {next(iter(missing))}")
    if extra:
        verdict.fail(f"{what}: {sum(extra.values())} rows not expected, e.g. {next(iter(extra))}")


def _rows(df: pl.DataFrame | None, columns: Sequence[str]) -> list[Row]:
    return [] if df is None else df.select(columns).rows()


def late_claims(df: pl.DataFrame | None, table: str, topic: str) -> dict[tuple[int, int], Late]:
    """What late_events says of `table`: (partition, offset) -> the watermark and windows.
    A record named twice is a duplicate row, which `compare` reports."""
    if df is None:
        return {}
    rows = df.filter((pl.col("table_name") == table) & (pl.col("topic") == topic))
    return {
        (p, o): Late(w, m, t)
        for p, o, w, m, t in rows.select(
            "partition", "offset", "watermark", "windows_missed", "windows_total"
        ).rows()
    }


def check_table(
    verdict: Verdict,
    spec: Spec,
    out: Path,
    topic: str,
    records: list[Record],
    meant_late: set[tuple[int, int]],
) -> None:
    """A window table against the batch computation, its late_events rows, and the records
    the workload made late (each must be among them)."""
    late_df = read_output(out, "late_events")
    claims = late_claims(late_df, spec.name, topic)
    compare(
        verdict,
        spec.name,
        expected(verdict, spec, records, claims),
        _rows(read_output(out, spec.name), spec.columns),
    )
    named = []
    if late_df is not None:
        of_table = late_df.filter(pl.col("table_name") == spec.name)
        named = of_table.select("topic", "partition", "offset").rows()
    doubled = {r: n for r, n in Counter(named).items() if n > 1}
    if doubled:
        verdict.duplicates += sum(n - 1 for n in doubled.values())
        verdict.fail(f"late_events of {spec.name}: {len(doubled)} records named twice")
    verdict.rows_checked += len(named)
    eligible = {(r.partition, r.offset) for r in records if r.value and spec.where(r.value)}
    for p, o in sorted((meant_late & eligible) - set(claims)):
        verdict.losses += 1
        verdict.fail(f"{spec.name}: late record {p}/{o} is not in late_events")


def _html(click: dict[str, Any]) -> bool:
    return "html" in str(click.get("request"))


def _error(click: dict[str, Any]) -> bool:
    return (as_int(click.get("status")) or 0) > 400


CLICK_TABLES = (
    Spec("pages_per_min", lambda c: as_int(c.get("userid")), _html,
         60 * S, 5 * S, 60 * S, 0, ("userid", "event_start", "event_end", "pages")),
    Spec("errors_per_min_alert", lambda c: as_int(c.get("status")), _error,
         60 * S, 20 * S, 60 * S, 5, ("status", "event_start", "event_end", "errors")),
)  # fmt: skip
USER_TABLES = (
    Spec("click_user_sessions", lambda u: u.get("USERNAME"), lambda u: True,
         30 * S, 0, 30 * S, 0, ("username", "event_start", "event_end", "events")),
    Spec("user_ip_activity", lambda u: (u.get("USERNAME"), u.get("IP"), u.get("CITY")),
         lambda u: True, 60 * S, 60 * S, 60 * S, 1,
         ("username", "ip", "city", "event_start", "event_end", "count")),
)  # fmt: skip


def check(run_dir: Path) -> Verdict:
    run = json.loads((run_dir / "run.json").read_text())
    dump, output = Path(run["dump"]), Path(run["output"])
    verdict = Verdict()
    began = run["began_ms"]
    clicks_topic, joined_topic = run["topics"]["clicks"], run["topics"]["joined"]

    clicks = load_topic(dump, clicks_topic)
    ids = {(r.partition, r.offset): r for r in clicks}
    far = far_future(clicks)
    meant_late = {i for i, r in ids.items() if r.ts < began - LATE_MS}
    unreadable = {i for i, r in ids.items() if r.value is None}
    plain = {i for i, r in ids.items() if r.plain and r.value is not None}
    verdict.counts.update(
        produced=len(clicks), late=len(meant_late), bad=len(unreadable | plain),
        far_future=len(far),
    )  # fmt: skip
    produced = run["workload"]["delivered"] - run["workload"]["sent"].get("user", 0)
    if produced != len(clicks):
        verdict.fail(f"the producer had {produced} clicks delivered, the topic holds {len(clicks)}")

    # clickstream reads values in any format (`auto`): a JSON object is an event, its
    # fields cast as Spark casts them
    out = output / "clickstream"
    events = [r for i, r in ids.items() if i not in unreadable | far]
    for spec in CLICK_TABLES:
        check_table(verdict, spec, out, clicks_topic, events, meant_late)
    alert_rows = _rows(read_output(out, "errors_per_min_alert"), CLICK_TABLES[1].columns)
    check_alerts(verdict, run_dir / "alerts-accepted.jsonl", alert_rows)
    check_dead_letters(verdict, "clickstream", out, {(clicks_topic, *i) for i in unreadable | far})

    # enrich reads Avro only: USER_CLICKSTREAM holds each Avro click once, with its user
    users = {
        int(r.key): r.value for r in load_topic(dump, run["topics"]["users"]) if r.key and r.value
    }
    joined = load_topic(dump, joined_topic)
    avro_clicks = [r for i, r in ids.items() if i not in unreadable | plain | far]
    check_joined(verdict, avro_clicks, joined, users)
    check_dead_letters(
        verdict, "enrich", output / "enrich", {(clicks_topic, *i) for i in unreadable | plain | far}
    )

    # user_clickstream: sessions and ip activity of what enrich wrote
    out = output / "user_clickstream"
    joined_late = {(r.partition, r.offset) for r in joined if r.ts < began - LATE_MS}
    readable = [r for r in joined if r.value is not None]
    for spec in USER_TABLES:
        check_table(verdict, spec, out, joined_topic, readable, joined_late)
    check_dead_letters(verdict, "user_clickstream", out, set())
    check_polls(verdict, run_dir / "delta-polls.jsonl")
    check_join_kept_up(verdict, run_dir / "timeline.jsonl", run_dir / "faults.jsonl")
    for what in run.get("left_running", []):
        verdict.fail(f"left running: {what}")
    for what in run.get("problems", []):
        verdict.fail(what)
    return verdict


def far_future(records: list[Record]) -> set[tuple[int, int]]:
    """The records stamped more than `FAR_FUTURE_MS` after the record before them in their
    partition (the workload's are 55 minutes ahead of the clock; the others are stamped
    as they are sent, and a partition's first records are never far ahead)."""
    last: dict[int, int] = {}
    found = set()
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.partition in last and r.ts > last[r.partition] + FAR_FUTURE_MS:
            found.add((r.partition, r.offset))
        else:  # the newest so far: a late record does not lower the mark
            last[r.partition] = max(r.ts, last.get(r.partition, r.ts))
    return found


def check_dead_letters(verdict: Verdict, dataflow: str, out: Path, want: set[Row]) -> None:
    rows = _rows(read_output(out, "dead_letters"), ["topic", "partition", "offset", "reason"])
    unexplained = [r for r in rows if not r[3]]
    if unexplained:
        verdict.fail(f"{dataflow} dead_letters: {len(unexplained)} without a reason")
    compare(verdict, f"{dataflow} dead_letters", Counter(want), [r[:3] for r in rows])


def check_joined(
    verdict: Verdict, clicks: list[Record], joined: list[Record], users: dict[int, dict[str, Any]]
) -> None:
    """Every click once in USER_CLICKSTREAM, with its user's name and city (none for a
    user that does not exist), its key the user id and its time the click's."""

    def want_row(r: Record) -> Row:
        c = r.value or {}
        userid = as_int(c.get("userid"))
        user = users.get(userid) if userid is not None else None
        status, size = as_int(c.get("status")), as_int(c.get("bytes"))
        name, city = (user["username"], user["city"]) if user else (None, None)
        return (str(userid), r.ts, c.get("ip"), c.get("request"), status, size, name, city)

    def got_row(r: Record) -> Row:
        v = r.value or {}
        key = (r.key or b"").decode()
        return (key, r.ts, v.get("IP"), v.get("REQUEST"), v.get("STATUS"), v.get("BYTES"),
                v.get("USERNAME"), v.get("CITY"))  # fmt: skip

    unreadable = sum(1 for r in joined if r.value is None or r.plain)
    if unreadable:
        verdict.fail(f"USER_CLICKSTREAM: {unreadable} records that are not Avro")
    compare(
        verdict,
        "USER_CLICKSTREAM",
        Counter(want_row(r) for r in clicks),
        [got_row(r) for r in once_per_origin(verdict, joined)],
        alike=True,
    )


def once_per_origin(verdict: Verdict, joined: list[Record]) -> list[Record]:
    """USER_CLICKSTREAM with each click (its `origin` header: where `enrich` read it) once;
    a click written twice fails, naming its copies and the lease tokens that wrote them."""
    copies: defaultdict[str, list[Record]] = defaultdict(list)
    kept = []
    for r in joined:
        origin = r.headers.get("origin")
        if origin is None:
            kept.append(r)  # the content comparison judges it
            continue
        if not copies[origin]:
            kept.append(r)
        copies[origin].append(r)
    doubled = {o: rs for o, rs in copies.items() if len(rs) > 1}
    if doubled:
        verdict.duplicates += sum(len(rs) - 1 for rs in doubled.values())
        origin, rs = next(iter(doubled.items()))
        written = ", ".join(
            f"{r.partition}/{r.offset} by lease token {r.headers.get('lease-token', '?')}"
            for r in rs
        )
        verdict.fail(
            f"USER_CLICKSTREAM: {len(doubled)} clicks written twice, e.g. {origin} at {written}"
        )
    return kept


def check_alerts(verdict: Verdict, journal: Path, rows: list[Row]) -> None:
    """Every row of errors_per_min_alert in a post Alertmanager accepted."""
    accepted: set[tuple[str, int]] = set()
    if journal.exists():
        for line in journal.read_text().splitlines():
            for alert in json.loads(line):
                labels = alert.get("labels", {})
                if labels.get("alertname") != "errors_per_min_alert":
                    continue
                starts = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00"))
                accepted.add((labels.get("status", ""), int(starts.timestamp() * 1000)))
    missing = [r for r in rows if (str(r[0]), r[1]) not in accepted]
    verdict.counts["alerts"] = len(rows)
    if missing:
        verdict.losses += len(missing)
        named = ", ".join(f"status {r[0]} from {r[1]}" for r in missing[:5])
        verdict.fail(f"{len(missing)} alert rows never reached Alertmanager: {named}")


def check_join_kept_up(verdict: Verdict, timeline: Path, faults: Path) -> None:
    """enrich wrote to USER_CLICKSTREAM while clicks came, not only in the drain: the
    tables would be right all the same, so only the run's timeline shows a join that held
    every click back. More than `STALL_S` without a record written, while the producer
    wrote and no fault was in force (a fault may hold enrich back for as long as it lasts,
    and a loaded machine stretches a restart), fails."""
    if not timeline.exists():
        return
    samples = [json.loads(line) for line in timeline.read_text().splitlines()]
    if not any("joined" in s for s in samples):
        return  # a run from before the timeline counted USER_CLICKSTREAM
    lines = faults.read_text().splitlines() if faults.exists() else []
    in_force = [(f["start_s"], f["end_s"]) for f in map(json.loads, lines)]
    last, produced, t_before, stalled, longest = -1, 0, 0.0, 0.0, 0.0
    for s in samples:
        joined = s.get("joined")
        if joined is not None and joined > last:
            last, stalled = joined, 0.0
        elif s["produced"] > produced:  # the producer still writes
            stalled += _free_of(in_force, t_before, s["t"])
            longest = max(longest, stalled)
        produced, t_before = s["produced"], s["t"]
    if longest > STALL_S:
        verdict.fail(
            f"USER_CLICKSTREAM: enrich wrote nothing for {longest:.0f} s without a fault "
            "in force while clicks came"
        )


def _free_of(spans: list[tuple[float, float]], a: float, b: float) -> float:
    """How much of [a, b] no span covers."""
    covered, at = 0.0, a
    for start, end in sorted(spans):
        start, end = max(start, at), min(end, b)
        if end > start:
            covered += end - start
            at = end
    return (b - a) - covered


def check_polls(verdict: Verdict, journal: Path) -> None:
    """No Delta version the poller read during the run held a row twice."""
    lines = journal.read_text().splitlines() if journal.exists() else []
    polls = [json.loads(line) for line in lines]
    verdict.counts["delta_polls"] = len(polls)
    for poll in polls:
        if poll["duplicates"]:
            verdict.duplicates += poll["duplicates"]
            verdict.fail(
                f"{poll['table']} version {poll['version']} held {poll['duplicates']} rows twice "
                "when a reader polled it"
            )


def main() -> None:
    run_dir = Path(sys.argv[1])
    verdict = check(run_dir)
    print(json.dumps(verdict.__dict__))
    sys.exit(1 if verdict.failures else 0)


if __name__ == "__main__":
    main()
