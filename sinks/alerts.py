"""Rows of alert tables, posted to Alertmanager once their write is durable.

    CLICKSTREAM_ALERTMANAGER_URL=http://alertmanager:9093
    CLICKSTREAM_ALERT_TABLES=errors_per_min_alert        # the default

Each row of an alert table becomes one alert of Alertmanager's API v2
(`POST /api/v2/alerts`):

- labels: `alertname` (the table), `dataflow`, and the row's group columns, e.g.
  `{alertname="errors_per_min_alert", dataflow="clickstream", status="404"}`;
- annotations: each aggregate (`errors: "7"`), the `window` and a `summary`;
- `startsAt`: the window's start; `endsAt`: when it was posted (or the window's end, if
  later) plus `resolve_after`.

Alertmanager knows an alert by its labels, so the rows of one key in consecutive windows
continue one alert, each post pushing `endsAt` on; once the key's windows stop having
rows, `endsAt` passes and Alertmanager resolves it by itself (docs/alerts.md).

Posting never holds the tables up. A sink partition hands its rows to its `Outbox` after
each flush and goes on; one thread per process (`AlertPoster`) posts what every outbox
holds, retrying with backoff while Alertmanager is away. An outbox holds at most
`CLICKSTREAM_ALERT_BUFFER` alerts (beyond, the oldest are dropped and counted) and is
part of its partition's snapshot: an alert not accepted before a crash is posted after
the resume. A row may so be posted twice; Alertmanager folds identical label sets.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from monitoring.metrics import (
    ALERT_POST_FAILURES,
    ALERT_ROWS_TOO_OLD,
    ALERTS_DROPPED,
    ALERTS_PENDING,
    ALERTS_POSTED,
)

log = logging.getLogger(__name__)

_RETRY_MIN_S = 1.0
_RETRY_MAX_S = 10.0
_POST_AT_MOST = 1_000  # alerts per request
_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def _name(column: str) -> str:
    """A column name as a Prometheus label name."""
    name = _LABEL.sub("_", column)
    return name if not name[:1].isdigit() else f"_{name}"


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _hms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


class Alert(NamedTuple):
    """One row as an alert, before the time it is posted fixes its `endsAt`."""

    table: str
    labels: dict[str, str]
    annotations: dict[str, str]
    start_ms: int
    end_ms: int
    resolve_after_s: float

    def payload(self, now_ms: float) -> dict[str, Any]:
        """The alert as Alertmanager's API v2 takes it, posted at `now_ms`."""
        ends = max(now_ms, self.end_ms) + self.resolve_after_s * 1000
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": _iso(self.start_ms),
            "endsAt": _iso(ends),
        }


@dataclass(frozen=True)
class AlertTable:
    """How the rows of one table become alerts.

    ```python
    table = AlertTable("errors_per_min_alert",
                       ("status", "event_start", "event_end", "errors"),
                       ("key", "start", "end", "value"), length_ms=60_000, resolve_after_s=44)
    table.alert(("404", 0, 60_000, 7), "clickstream").labels
    # {"alertname": "errors_per_min_alert", "dataflow": "clickstream", "status": "404"}
    ```

    `roles` name what each column is: a group `key`, the window's `start` or `end`, or a
    `value` (an aggregate). A table with no `end` column has windows of `length_ms`.
    """

    name: str
    columns: Sequence[str]
    roles: Sequence[str]
    length_ms: int | None
    resolve_after_s: float

    def alert(self, row: tuple, dataflow: str) -> Alert:
        labels = {"alertname": self.name, "dataflow": dataflow}
        values: dict[str, str] = {}
        start = end = None
        for column, role, value in zip(self.columns, self.roles, row, strict=True):
            if role == "start":
                start = value
            elif role == "end":
                end = value
            elif role == "key":
                if value is not None:  # as in Prometheus, an empty label is no label
                    labels[_name(column)] = str(value)
            else:
                values[_name(column)] = str(value)
        assert start is not None, f"{self.name}: a row without its window start"
        if end is None:
            end = start + (self.length_ms or 0)
        keys = ", ".join(f"{k}={v}" for k, v in list(labels.items())[2:]) or "all"
        counts = ", ".join(f"{k}={v}" for k, v in values.items())
        day = datetime.fromtimestamp(start / 1000, UTC).strftime("%Y-%m-%d")
        window = f"{_iso(start)}/{_iso(end)}"
        summary = f"{self.name}: {counts} for {keys} in {_hms(start)}-{_hms(end)} UTC {day}"
        annotations = {**values, "window": window, "summary": summary}
        return Alert(self.name, labels, annotations, start, end, self.resolve_after_s)


class AlertPoster:
    """Posts the alerts of every outbox of a process to one Alertmanager, in a thread.

    ```python
    poster = AlertPoster("http://127.0.0.1:9093", "clickstream", max_age_s=900)
    outbox = poster.outbox(capacity=10_000, saved=[])
    outbox.put(alerts)        # returns at once; posted within a second or so
    ```

    An alert whose window ended more than `max_age_s` before it would be posted is
    not posted (a backfill of old events pages no one), only counted.
    """

    def __init__(self, url: str, dataflow: str, max_age_s: float, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.dataflow = dataflow
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self.outboxes: list[Outbox] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.failing_since: float | None = None
        ALERTS_PENDING.labels(dataflow).set_function(self.pending)
        # from zero, so that rules on their increase see the first failure
        ALERT_POST_FAILURES.labels(dataflow)
        for reason in ("buffer full", "refused"):
            ALERTS_DROPPED.labels(dataflow, reason)

    def outbox(self, capacity: int, saved: Sequence[tuple]) -> Outbox:
        """A sink partition's outbox, holding the alerts of its snapshot (`saved`)."""
        box = Outbox(self, capacity)
        box.put([Alert(*a) for a in saved])
        with self.lock:
            self.outboxes.append(box)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="alerts", daemon=True)
                self.thread.start()
        return box

    def pending(self) -> int:
        with self.lock:
            boxes = list(self.outboxes)
        return sum(len(b) for b in boxes)

    def _run(self) -> None:
        delay = _RETRY_MIN_S
        while True:
            self.wake.wait(timeout=delay)
            self.wake.clear()
            delay = _RETRY_MIN_S if self._post_once() else min(delay * 2, _RETRY_MAX_S)

    def _post(self, alerts: list[dict[str, Any]]) -> tuple[int, str]:
        """POST `alerts`; Alertmanager's status and answer (an `OSError` if none)."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return answer.status, answer.read().decode(errors="replace")
        except urllib.error.HTTPError as ex:
            return ex.code, ex.read().decode(errors="replace")

    def _post_once(self) -> bool:
        """Post what the outboxes hold (up to `_POST_AT_MOST`); False: try again later."""
        with self.lock:
            boxes = list(self.outboxes)
        taken: list[tuple[Outbox, int, list[Alert]]] = []
        room = _POST_AT_MOST
        for box in boxes:
            last, alerts = box.peek(room)
            if alerts:
                taken.append((box, last, alerts))
                room -= len(alerts)
        if not taken:
            return True
        now_ms = time.time() * 1000
        oldest_ms = now_ms - self.max_age_s * 1000
        payload: list[Alert] = []
        too_old: list[Alert] = []
        for _, _, alerts in taken:
            for alert in alerts:
                (too_old if alert.end_ms < oldest_ms else payload).append(alert)
        try:
            if payload:
                status, text = self._post([a.payload(now_ms) for a in payload])
                if status >= 500:
                    raise OSError(f"HTTP {status}: {text.strip()[:200]}")
                if status >= 400:  # it will not take them as they are: drop them
                    ALERTS_DROPPED.labels(self.dataflow, "refused").inc(len(payload))
                    log.error(
                        "alerts: Alertmanager refused %d alerts (HTTP %d: %s); dropped",
                        len(payload),
                        status,
                        text.strip()[:200],
                    )
                    payload = []
        except OSError as ex:
            ALERT_POST_FAILURES.labels(self.dataflow).inc()
            if self.failing_since is None:
                self.failing_since = time.monotonic()
                log.warning(
                    "alerts: cannot post to %s (%s); %d alerts wait, asking again with backoff",
                    self.url,
                    ex or type(ex).__name__,
                    self.pending(),
                )
            return False
        # counted before they leave their outbox: an empty outbox means counted too
        for table, n in Counter(a.table for a in payload).items():
            ALERTS_POSTED.labels(self.dataflow, table).inc(n)
        for table, n in Counter(a.table for a in too_old).items():
            ALERT_ROWS_TOO_OLD.labels(self.dataflow, table).inc(n)
        for box, last, _ in taken:
            box.done(last)
        if self.failing_since is not None:
            log.warning(
                "alerts: Alertmanager takes alerts again after %.0f s",
                time.monotonic() - self.failing_since,
            )
            self.failing_since = None
        if room == 0:
            self.wake.set()  # more wait
        return True


class Outbox:
    """The alerts of one sink partition not yet accepted by Alertmanager, oldest first."""

    def __init__(self, poster: AlertPoster, capacity: int) -> None:
        self.poster = poster
        self.capacity = capacity
        self.items: deque[tuple[int, Alert]] = deque()
        self.numbers = itertools.count()
        self.lock = threading.Lock()
        self.dropped = 0
        self.dropped_logged_at = -1e9

    def __len__(self) -> int:
        return len(self.items)

    def put(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        with self.lock:
            self.items.extend(zip(self.numbers, alerts, strict=False))
            over = len(self.items) - self.capacity
            for _ in range(max(over, 0)):
                self.items.popleft()
        if over > 0:
            ALERTS_DROPPED.labels(self.poster.dataflow, "buffer full").inc(over)
            self.dropped += over
            now = time.monotonic()
            if now - self.dropped_logged_at >= 60:  # once a minute, not once a flush
                log.error(
                    "alerts: %d alerts dropped so far: %d wait for Alertmanager already "
                    "(CLICKSTREAM_ALERT_BUFFER)",
                    self.dropped,
                    self.capacity,
                )
                self.dropped_logged_at = now
        self.poster.wake.set()

    def peek(self, n: int) -> tuple[int, list[Alert]]:
        """Up to `n` of the oldest alerts, and the number of the last one."""
        with self.lock:
            head = list(itertools.islice(self.items, n))
        return (head[-1][0] if head else -1), [a for _, a in head]

    def done(self, last: int) -> None:
        """Alerts up to number `last` were accepted (or are past posting)."""
        with self.lock:
            while self.items and self.items[0][0] <= last:
                self.items.popleft()

    def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for this outbox to be posted (a bounded run's end)."""
        self.poster.wake.set()
        deadline = time.monotonic() + timeout_s
        while len(self) and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(self):
            log.warning(
                "alerts: %d alerts were not accepted by %s within %.0f s of the end; not posted",
                len(self),
                self.poster.url,
                timeout_s,
            )

    def saved(self) -> list[tuple]:
        """What the partition's snapshot keeps: the alerts not accepted yet."""
        with self.lock:
            return [tuple(a) for _, a in self.items]


class TableAlerts:
    """What a sink needs for alerts: the alert tables by name, and the poster."""

    def __init__(self, tables: Sequence[AlertTable], poster: AlertPoster, capacity: int) -> None:
        self.tables = {t.name: t for t in tables}
        self.poster = poster
        self.capacity = capacity

    def outbox(self, saved: Sequence[tuple]) -> Outbox:
        return self.poster.outbox(self.capacity, saved)

    def alerts(self, table: str, rows: Sequence[tuple]) -> list[Alert]:
        """The alerts of `rows` of `table`, none if it is not an alert table."""
        found = self.tables.get(table)
        if found is None:
            return []
        return [found.alert(row, self.poster.dataflow) for row in rows]
