"""The embedded default source: datagen-shaped records timestamped now.

Produces `clickstream` records, or `USER_CLICKSTREAM` records (the joined shape,
join misses included) at `rate` records per second, forever or `count` of them.
Nothing external is needed, which is what makes `just demo` run anywhere.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Literal

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from config import DEFAULTS
from events import datagen
from events.schema import RawBatch
from monitoring.metrics import InputMeter
from operators.batches import END, Origins

DatagenStream = Literal["clickstream", "user_clickstream"]
DATAGEN_STREAMS: tuple[DatagenStream, ...] = ("clickstream", "user_clickstream")
"""The streams whose records the datagen makes."""


class _DatagenPartition(StatefulSourcePartition[RawBatch, int]):
    def __init__(
        self,
        stream: DatagenStream,
        rate: float,
        count: int | None,
        batch_size: int,
        dataflow: str,
        produced: int,
    ) -> None:
        self.stream = stream
        self.topic = "clickstream" if stream == "clickstream" else "USER_CLICKSTREAM"
        self.rate = rate
        self.count = count
        self.batch_size = batch_size
        self.produced = produced
        self.gen = datagen.ClickGenerator()
        self.users = {uid: self.gen.user(uid) for uid in range(1, datagen.MAX_USER_ID + 1)}
        self.started = time.monotonic()
        self.started_at = produced
        self.high = 0
        self.finished = False
        self.meter = InputMeter(dataflow, f"datagen {self.topic}")

    def next_batch(self) -> list[RawBatch]:
        if self.finished:
            raise StopIteration
        due = self.started_at + int((time.monotonic() - self.started) * self.rate)
        if self.count is not None:
            due = min(due, self.count)
        n = min(max(due - self.produced, 0), self.batch_size)
        values: list[bytes] = []
        keys: list[bytes] = []
        times: list[int] = []
        first = self.produced
        for _ in range(n):
            now = time.time_ns() // 1_000_000
            click = self.gen.click()
            if self.stream == "clickstream":
                keys.append(str(click["ip"]).encode())
                values.append(datagen.dumps(click))
            else:
                userid = int(str(click["userid"]))
                keys.append(str(userid).encode())
                values.append(datagen.enriched(click, self.users.get(userid)))
            times.append(now)
            self.produced += 1
            self.high = max(self.high, now)
        at_end = self.count is not None and self.produced >= self.count
        self.finished = at_end
        self.meter.read(self.topic, 0, n)
        if at_end:
            self.meter.finished()
        else:
            self.meter.polled(n, waiting=False)
        return [
            RawBatch(
                "datagen",
                1,
                values,
                times,
                list(times),
                END if at_end else self.high,
                origins=Origins(self.topic, 0, list(range(first, self.produced))),
                keys=keys,
            )
        ]

    def next_awake(self) -> datetime | None:
        if self.count is not None and self.produced >= self.count:
            return None
        wait = max(
            0.0,
            (self.produced + 1 - self.started_at) / self.rate - (time.monotonic() - self.started),
        )
        # Wake at least every second so downstream flushes stay fresh.
        return datetime.now(UTC) + timedelta(seconds=min(wait, 1.0))

    def snapshot(self) -> int:
        return self.produced


class DatagenSource(FixedPartitionedSource[RawBatch, int]):
    def __init__(
        self,
        stream: DatagenStream,
        rate: float,
        count: int | None = None,
        batch_size: int = DEFAULTS.batch_size,
        dataflow: str = "",
    ) -> None:
        self.dataflow = dataflow
        self.stream = stream
        self.rate = rate
        self.count = count
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return ["datagen"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _DatagenPartition:
        return _DatagenPartition(
            self.stream, self.rate, self.count, self.batch_size, self.dataflow, resume_state or 0
        )
