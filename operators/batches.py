"""Event-time batches: the unit that flows from sources through our operators.

A source partition (one Kafka partition, one replay file, one datagen stream)
emits `TimedBatch`es. Besides the events, a batch says how far in event time its
partition has read (`marks` per event, `progress` after the batch). Window
operators take the minimum over partitions as the stream's watermark, so the least
advanced partition holds it back, as in Flink.

Moving batches instead of single events keeps Bytewax's per-item cost off the
per-event path; every operator here is batch-in, batch-out.

Glossary of event time (all epoch milliseconds):

- **progress**: how far one input partition has read in event time, the largest
  record timestamp it has read (`END` once it is exhausted). The one word for it;
  the names below are progress seen from one place.
- **mark** (`marks[i]`): the progress of the event's own Kafka partition when the
  event was read. An event is late when its window ends at or before its mark minus
  the delay.
- **low**: the least progress over the partitions of a stream (a replay source
  reading several Kafka partitions reports its own low in `lows`). It holds the
  watermark back.
- **watermark**: low minus the operator's delay. Windows ending at or before it are
  emitted, once.
- **due**: the next window end (or session end) a shard is waiting for the
  watermark to pass.
- **idle**: a partition that has read nothing for the idle timeout; its progress no
  longer holds the low back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import Any, Generic, TypeVar

E = TypeVar("E")
F = TypeVar("F")

END = 2**62
"""Event time of a partition that has reached the end of its input: flushes every window."""

NEVER = -(2**62)
"""Event time of a partition that has read nothing yet."""

Origin = tuple[str, int, int]
"""Where an event was read: Kafka topic, partition and offset."""


@dataclass(frozen=True)
class Origins:
    """The `Origin` of every event of a batch, kept as columns so that no tuple is made
    per event unless someone asks: a topic and a partition for the whole batch (one
    Kafka partition) or one per event (a replay of a whole topic dump), and offsets."""

    topic: str | list[str]
    partition: int | list[int]
    offsets: list[int]

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> Origin:
        topic = self.topic if isinstance(self.topic, str) else self.topic[i]
        partition = self.partition if isinstance(self.partition, int) else self.partition[i]
        return topic, partition, self.offsets[i]

    def __iter__(self) -> Iterator[Origin]:
        n = len(self.offsets)
        topics = repeat(self.topic, n) if isinstance(self.topic, str) else self.topic
        partitions = (
            repeat(self.partition, n) if isinstance(self.partition, int) else self.partition
        )
        return zip(topics, partitions, self.offsets, strict=True)

    def select(self, keep: list[bool]) -> Origins:
        """Only the origins where `keep` is true."""

        def pick(column: Any) -> Any:
            return column if isinstance(column, str | int) else list(compress(column, keep))

        return Origins(pick(self.topic), pick(self.partition), list(compress(self.offsets, keep)))


@dataclass(frozen=True)
class TimedBatch(Generic[E]):
    """Events read from one input partition, with that partition's event-time progress.

    `times[i]` is the event time (epoch ms) of `events[i]`; `marks[i]` is the
    largest event time its Kafka partition had reached up to and including
    `events[i]`, which is what lateness is judged against. `lows[i]` is this
    source partition's progress after `events[i]` (what holds the watermark); it is
    the same as `marks` (and may be left `None`) unless one source partition reads
    several Kafka partitions, as a replay of a whole topic dump does.
    `progress` is the partition's progress after the whole batch (`END` once its
    input is exhausted). An `idle` partition has read nothing for the idle timeout;
    its `progress` stays at its last event time and it no longer holds the
    watermark of the other partitions back. A partition that `was_idle` at some
    point may since be behind the stream's watermark, so operators judge each of
    its events against that watermark instead of taking shortcuts.
    `origins[i]` says where `events[i]` was read, when the source knows.

    A batch with no events is a heartbeat: it only moves `progress`.
    """

    part: str
    parts: int
    events: list[E] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    marks: list[int] = field(default_factory=list)
    progress: int = NEVER
    idle: bool = False
    lows: list[int] | None = None
    origins: Origins | None = None
    was_idle: bool = False

    @property
    def at_end(self) -> bool:
        return self.progress >= END


def batches_of(
    events: Sequence[E],
    times: Sequence[int],
    sizes: Sequence[int],
    part: str = "p0",
    parts: int = 1,
) -> list[TimedBatch[E]]:
    """In-memory events of one partition (in arrival order, `times[i]` the event time of
    `events[i]`) cut into batches of `sizes` (cycled), as a source reading them would
    emit them; the last batch ends the partition. For tests and benchmarks.

    ```python
    batches_of(["a", "b", "c"], [1_000, 3_000, 2_000], [2])
    # [TimedBatch("p0", 1, ["a", "b"], [1000, 3000], [1000, 3000], 3000),
    #  TimedBatch("p0", 1, ["c"], [2000], [3000], 3000), TimedBatch("p0", 1, [], [], [], END)]
    ```
    """
    out: list[TimedBatch[E]] = []
    sizes = list(sizes) or [len(events) or 1]
    high = NEVER
    i = n = 0
    while i < len(events):
        size = max(1, sizes[n % len(sizes)])
        n += 1
        chunk, chunk_times = list(events[i : i + size]), list(times[i : i + size])
        i += size
        marks = []
        for t in chunk_times:
            high = max(high, t)
            marks.append(high)
        out.append(TimedBatch(part, parts, chunk, chunk_times, marks, high))
    out.append(TimedBatch(part, parts, [], [], [], END))
    return out
